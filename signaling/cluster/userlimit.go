package cluster

import (
	"encoding/json"
	"slices"

	"github.com/nats-io/nats.go"

	"github.com/khadga/khadga/signaling/hub"
)

// The limit of connections and sessions per user (hub.Config.MaxConnsPerUser)
// holds over the cluster (the hub's clusterlimit.go says how). What it
// needs from the cluster is the directory's view of a user's sessions on
// the other nodes, with whether each waits for its client to resume and
// since when (a session's state says so from the moment its socket goes
// away), and a way to have another node end one that waits: a request to
// that node on its end subject, answered once the node has ended the
// session, or found that it no longer waits (its client resumed) or is
// no longer there.

// endRequest asks a node to end one of its sessions that waits for a
// resume, for a new session of the same user elsewhere.
type endRequest struct {
	Peer string `json:"peer"`
	User string `json:"user"`
}

type endReply struct {
	Ended bool `json:"ended"`
}

// SessionsElsewhere counts user's sessions on the other nodes that this
// node knows of (hub.Delivery).
func (n *Node) SessionsElsewhere(user string) int { return n.dir.count(user) }

// Elsewhere returns what this node knows of user's sessions on the other
// nodes (hub.Delivery). Sessions of a node taken for gone count for
// nothing: nobody can end them, and they are removed within OrphanGrace
// unless their clients resume them elsewhere (a resume of one is still
// reported).
func (n *Node) Elsewhere(user string, tokenHash []byte) hub.Elsewhere {
	all, named := n.dir.elsewhere(user, tokenHash)
	var out hub.Elsewhere
	for _, w := range all {
		resumed := named != "" && w.Peer == named
		out.Resumes = out.Resumes || resumed
		if n.live.isGone(w.Node) {
			continue
		}
		if w.Since.IsZero() {
			out.Open++
			out.TakesOver = out.TakesOver || resumed
			continue
		}
		out.Waiting = append(out.Waiting, w)
	}
	slices.SortFunc(out.Waiting, func(a, b hub.Waiting) int { return a.Since.Compare(b.Since) })
	return out
}

// EndWaiting asks node to end peer, a session of user that waits there
// for a resume (hub.Delivery), and waits up to ClaimTimeout for the
// answer.
func (n *Node) EndWaiting(node, peer, user string) bool {
	if !validToken(node) || n.live.isGone(node) {
		return false
	}
	req, _ := json.Marshal(endRequest{Peer: peer, User: user})
	m, err := n.nc.Request(n.subject("node", node, "end"), req, n.cfg.ClaimTimeout)
	if err != nil {
		n.stats.ends.WithLabelValues("no_answer").Inc()
		return false
	}
	var r endReply
	if json.Unmarshal(m.Data, &r) != nil || !r.Ended {
		n.stats.ends.WithLabelValues("refused").Inc()
		return false
	}
	n.stats.ends.WithLabelValues("ended").Inc()
	return true
}

// onEnd answers another node's request to end a session of this one that
// waits for a resume (hub.Hub.EndWaiting).
func (n *Node) onEnd(m *nats.Msg) {
	var req endRequest
	if json.Unmarshal(m.Data, &req) != nil || !validToken(req.Peer) || req.User == "" {
		n.stats.badMessages.Inc()
		return
	}
	b, _ := json.Marshal(endReply{Ended: n.hub.EndWaiting(req.Peer, req.User)})
	if err := m.Respond(b); err != nil {
		n.stats.publishErrors.Inc()
	}
}
