package cluster

import (
	"encoding/json"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/khadga/khadga/proto"
)

// Revocation across the cluster: signing out, disabling or deleting a user
// and retiring a key end the user's sessions on every node. The node where
// it happens ends its own at once and tells the others on the revoke
// subject. Node implements package signaling's session closer.

type revocation struct {
	Node   string     `json:"node"`
	User   string     `json:"user"`
	Login  string     `json:"login,omitempty"`   // empty: every sign-in of User
	MoveTo string     `json:"move_to,omitempty"` // on the relogin subject: Login's sessions move to this sign-in
	Code   proto.Code `json:"code"`
	Reason string     `json:"reason"`
}

// CloseUser ends every session of user, on every node. It returns how many
// of this node's sessions ended (the others end theirs as they hear).
func (n *Node) CloseUser(user string, code proto.Code, reason string) int {
	n.broadcastRevocation(revocation{User: user, Code: code, Reason: reason})
	return n.hub.CloseUser(user, code, reason)
}

// CloseLogin ends the sessions of one sign-in of user, on every node.
func (n *Node) CloseLogin(user, login string, code proto.Code, reason string) int {
	n.broadcastRevocation(revocation{User: user, Login: login, Code: code, Reason: reason})
	return n.hub.CloseLogin(user, login, code, reason)
}

// MoveLogin gives the sessions of one sign-in of user another, on every
// node (a password change). It has a subject of its own: a node of an
// older version, during a rolling update, would take it on the revoke
// subject for a sign-out of the sign-in that changed the password.
func (n *Node) MoveLogin(user, from, to string) int {
	n.broadcast("relogin", revocation{User: user, Login: from, MoveTo: to})
	return n.hub.MoveLogin(user, from, to)
}

func (n *Node) broadcastRevocation(r revocation) { n.broadcast("revoke", r) }

func (n *Node) broadcast(subject string, r revocation) {
	r.Node = n.id
	b, _ := json.Marshal(r)
	if !n.out.publish(n.subject(subject), b) {
		n.log.Warn("cluster: could not tell the other nodes: outbox full", slog.String("subject", subject))
	}
}

func (n *Node) onRevoke(m *nats.Msg) {
	var r revocation
	if json.Unmarshal(m.Data, &r) != nil || r.User == "" {
		n.stats.badMessages.Inc()
		return
	}
	if r.Node == n.id {
		return // this node ended its own when it sent it
	}
	switch {
	case m.Subject == n.subject("relogin"):
		if r.Login != "" && r.MoveTo != "" {
			n.hub.MoveLogin(r.User, r.Login, r.MoveTo)
		}
	case r.Login != "":
		n.hub.CloseLogin(r.User, r.Login, r.Code, r.Reason)
	default:
		n.hub.CloseUser(r.User, r.Code, r.Reason)
	}
}

// Revoke ends sessions on every node of the cluster whose subject prefix
// is subject (Config.Subject, "" for the default), from a process that is
// no node: `khadga user disable --nats ...` and the other admin commands.
// login "" ends every session of user.
func Revoke(nc *nats.Conn, subject, user, login string, code proto.Code, reason string) error {
	if subject == "" {
		subject = "khadga"
	}
	b, err := json.Marshal(revocation{User: user, Login: login, Code: code, Reason: reason})
	if err != nil {
		return err
	}
	if err := nc.Publish(subject+".revoke", b); err != nil {
		return err
	}
	return nc.Flush()
}
