package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/khadga/khadga/proto"
)

// Revocation across the cluster: signing out, disabling or deleting a user
// and retiring a key end the user's sessions on every node. The node where
// it happens ends its own at once and tells the others on the revoke
// subject. Node implements package signaling's session closer.
//
// A JetStream stream keeps what is published on the revoke and relogin
// subjects for revocationReplay, and each node reads them from it, with an
// ordered consumer, instead of subscribing to them: a node cut off from
// NATS when a revocation went out gets it when it is back (NATS core
// keeps nothing for a subscriber that is away, and a session on that
// node outlived its revocation for as long as its socket stayed open),
// and every node handles revocations and moves in one order, the
// stream's. Publishers are unchanged (plain publishes, which the stream
// takes in), so that nodes of an older version, subscribed to the
// subjects, hear the new ones and the other way round during a rolling
// update, and so do `khadga user` commands (Revoke). A revocation that
// JetStream does not take in (it has no quorum) reaches only those older
// nodes; it needs the store, which needs the same quorum, to be made.

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

// revocationReplay is how long the revocation stream keeps a revocation:
// a node cut off from NATS for longer misses what went out before that.
// By then the other nodes have long taken it for gone and shown its
// sessions offline.
const revocationReplay = 10 * time.Minute

// revocationStream names the stream of the revoke and relogin subjects of
// the cluster whose subject prefix is subject.
func revocationStream(subject string) string {
	return strings.ReplaceAll(subject, ".", "_") + "-revocations"
}

func createRevocationStream(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	name := revocationStream(cfg.Subject)
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "khadga: revocations and sign-in moves, for nodes that were away when they went out",
		Subjects:    []string{cfg.Subject + ".revoke", cfg.Subject + ".relogin"},
		MaxAge:      revocationReplay,
		MaxBytes:    64 << 20,
		Replicas:    cfg.Replicas,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("cluster: revocation stream %s: %w", name, err)
	}
	return nil
}

// revocationConsumerIdle is how long the server keeps a node's consumer
// of the revocation stream once nothing reads it (the node stopped,
// crashed or was cut off). The ordered consumer keeps its place on the
// node's side and, back from a cut, makes a new one from the sequence
// after the last it delivered, so the server's copy need not wait for it.
const revocationConsumerIdle = 30 * time.Second

// consumeRevocations has onRevoke handle what the revocation stream takes
// in from now on, in its order, until Close. The ordered consumer picks
// up after the last one it delivered when NATS comes back; it starts at a
// sequence number, not at "new" (DeliverNewPolicy), which it would start
// at again if NATS went away before it delivered anything.
func (n *Node) consumeRevocations(ctx context.Context) error {
	name := revocationStream(n.cfg.Subject)
	st, err := n.js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("cluster: revocation stream %s: %w", name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("cluster: revocation stream %s: %w", name, err)
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       info.State.LastSeq + 1,
		InactiveThreshold: n.cfg.revocationConsumerIdle,
	})
	if err != nil {
		return fmt.Errorf("cluster: revocation stream %s: %w", name, err)
	}
	handle := n.handler(n.onRevoke)
	cc, err := c.Consume(func(m jetstream.Msg) {
		handle(&nats.Msg{Subject: m.Subject(), Data: m.Data()})
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		n.log.Debug("cluster: revocation stream", slog.Any("err", err))
	}))
	if err != nil {
		return fmt.Errorf("cluster: revocation stream %s: %w", name, err)
	}
	n.revocations = cc
	return nil
}
