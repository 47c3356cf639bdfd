package cluster

import (
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// A claim moves a session to the node where its client resumed. The new
// node asks the old one, on the old one's claim subject, with the resume
// token's hash; the old one lets the session go (hub.Release) and answers
// with its state and what waited for it. If the old node does not answer
// (it is gone, or slower than ClaimTimeout), the new node takes the
// session from the directory, without what waited on the old node: the
// senders of those signals hear from their own nodes, when the old node
// is found gone or when their signals' fate does not come back in time.
// Every signal in an answer is tracked by its sender's node for that: an
// answer the claimer gave up on is not read by anyone.
//
// What waited may be far more than one NATS message carries (max_payload,
// 1 MB by default: a send queue holds up to 2 MiB, an absent queue 64
// messages of up to 64 KiB), so the answer comes in parts, each within
// the connection's max payload, on an inbox of the claimer's own: the
// first has the session's state, every part but the last says more
// follow, and NATS keeps them in order (one publisher, one
// subscription). A node of an older version reads the first part only.

type claimRequest struct {
	Hash []byte `json:"hash"`
	User string `json:"user"`
	Node string `json:"node"`
}

type claimReply struct {
	OK      bool          `json:"ok"`
	Rooms   []string      `json:"rooms,omitempty"`
	Grants  []string      `json:"grants,omitempty"`
	Login   string        `json:"login,omitempty"`
	Key     string        `json:"key,omitempty"`
	Member  proto.Member  `json:"member"`
	Pending []claimedItem `json:"pending,omitempty"`
	// Order is what the old node expects next of each node's numbered
	// signals to the session (order.go): the ones before are delivered
	// or in Pending, the ones from there on still to come.
	Order map[string]uint64 `json:"order,omitempty"`
	// More says another part of Pending follows (parts).
	More bool `json:"more,omitempty"`
}

type claimedItem struct {
	Kind   hub.Kind `json:"kind"`
	Msg    []byte   `json:"msg"`
	From   string   `json:"from,omitempty"`
	Ref    string   `json:"ref,omitempty"`
	Origin string   `json:"origin,omitempty"`
	Seq    uint64   `json:"seq,omitempty"`
	Held   bool     `json:"held,omitempty"`
}

// Claim takes, for a resume on this node, a session another node holds
// (hub.Delivery).
func (n *Node) Claim(tokenHash []byte, user string) (hub.SessionState, []hub.Envelope, error) {
	st, ok := n.dir.waitToken(tokenHash, n.cfg.TokenWait)
	if !ok || st.Member.User != user {
		n.stats.claims.WithLabelValues("unknown").Inc()
		return hub.SessionState{}, nil, hub.ErrUnknownPeer
	}
	r, err := n.askClaim(st.Node, claimRequest{Hash: tokenHash, User: user, Node: n.id})
	switch {
	case err == nil:
		if !r.OK {
			n.stats.claims.WithLabelValues("refused").Inc()
			return hub.SessionState{}, nil, hub.ErrUnknownPeer
		}
		n.dir.claimed(st.Member.Peer)
		n.ord.install(r.Member.Peer, r.Order, true)
		n.stats.claims.WithLabelValues("handed").Inc()
		out := hub.SessionState{Member: r.Member, Node: st.Node, Rooms: r.Rooms, Grants: r.Grants,
			Login: r.Login, KeyID: r.Key, TokenHash: tokenHash}
		n.claimedHook(out)
		return out, fromClaimed(r.Pending), nil
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrTimeout):
		// Its node is gone (or cut off): take the session as the directory
		// has it.
		n.dir.claimed(st.Member.Peer)
		n.ord.install(st.Member.Peer, nil, false)
		n.stats.claims.WithLabelValues("taken").Inc()
		n.log.Info("cluster: took a session whose node did not answer", slog.String("peer", st.Member.Peer),
			slog.String("peer_node", st.Node), slog.Any("err", err))
		n.claimedHook(st)
		return st, nil, nil
	default:
		n.stats.claims.WithLabelValues("failed").Inc()
		return hub.SessionState{}, nil, err
	}
}

func (n *Node) claimedHook(st hub.SessionState) {
	if hook := n.testHookClaimed.Load(); hook != nil {
		(*hook)(st)
	}
}

// askClaim sends a claim to node and reads its answer, every part of it,
// within ClaimTimeout. An answer cut short (its node died between two
// parts) is what came: the session is released there already, and the
// signals of the parts that did not come are tracked by their senders'
// nodes.
func (n *Node) askClaim(node string, req claimRequest) (claimReply, error) {
	var r claimReply
	inbox := n.nc.NewInbox()
	sub, err := n.nc.SubscribeSync(inbox)
	if err != nil {
		return r, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	b, _ := json.Marshal(req)
	if err := n.nc.PublishRequest(n.subject("node", node, "claim"), inbox, b); err != nil {
		return r, err
	}
	deadline := time.Now().Add(n.cfg.ClaimTimeout)
	for first := true; ; first = false {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			if first {
				return r, err
			}
			n.log.Warn("cluster: a claim's answer stopped before its last part", slog.String("peer", r.Member.Peer),
				slog.String("peer_node", node), slog.Any("err", err))
			return r, nil
		}
		var part claimReply
		if json.Unmarshal(m.Data, &part) != nil {
			if first {
				return r, nil // refused
			}
			n.stats.badMessages.Inc()
			return r, nil
		}
		if first {
			r = part
		} else {
			r.Pending = append(r.Pending, part.Pending...)
		}
		if !r.OK || !part.More {
			return r, nil
		}
	}
}

// onClaim answers another node's claim of a session of this node.
func (n *Node) onClaim(m *nats.Msg) {
	var req claimRequest
	if json.Unmarshal(m.Data, &req) != nil || !validToken(req.Node) {
		n.stats.badMessages.Inc()
		return
	}
	var r claimReply
	var order map[string]uint64
	// Release and what this node expected next of the session's numbered
	// signals, together: a signal handled in between would be neither
	// here nor counted.
	n.ord.inMu.Lock()
	st, pending, err := n.hub.Release(req.Hash, req.User, req.Node)
	var early []delivery
	if err == nil {
		order, early = n.ord.takeLocked(st.Member.Peer)
		// Those that came early go on to the new node, which orders them.
		for _, d := range early {
			n.deliverNow(d)
		}
	}
	n.ord.inMu.Unlock()
	if err == nil {
		r = claimReply{OK: true, Member: st.Member, Rooms: st.Rooms, Grants: st.Grants, Login: st.Login, Key: st.KeyID, Order: order}
		for _, e := range pending {
			if e.Kind == hub.KindSignal && !e.Held && e.From != "" {
				// A signal no node tracks (this node's own sender's, or one
				// whose node was told it was delivered to the connection
				// this claim took over): tracked from here on, like any
				// this node sends, so that if the claimer gave up waiting
				// and never reads this answer, the sender hears. The
				// claimer queues it on the resumed connection at once and
				// says so (Delivered), well within AckWait. A held one's
				// node tracks it already.
				e.Origin, e.Seq = n.id, n.track.add(e.From, e.Ref, st.Member.Peer, req.Node)
			}
			r.Pending = append(r.Pending, claimedItem{Kind: e.Kind, Msg: e.Msg, From: e.From, Ref: e.Ref, Origin: e.Origin, Seq: e.Seq, Held: e.Held})
		}
	}
	for _, b := range claimParts(r, int(n.nc.MaxPayload())) {
		if err := m.Respond(b); err != nil {
			n.stats.publishErrors.Inc()
			n.log.Warn("cluster: could not answer a claim", slog.String("peer_node", req.Node), slog.Any("err", err))
			return
		}
	}
}

// claimParts encodes r as the parts of a claim's answer, each within limit
// bytes if its items allow (one item always goes, whatever its size): the
// first with r's state, the next ones with the rest of r.Pending.
func claimParts(r claimReply, limit int) [][]byte {
	items := r.Pending
	r.Pending = nil
	var parts [][]byte
	for {
		r.More = true // as long as the final encoding's, for the size
		fixed, _ := json.Marshal(r)
		size := len(fixed) + len(`,"pending":[]`)
		k := 0
		for ; k < len(items); k++ {
			b, _ := json.Marshal(items[k])
			if k > 0 && size+len(b)+1 > limit {
				break
			}
			size += len(b) + 1
		}
		r.Pending, items = items[:k], items[k:]
		r.More = len(items) > 0
		b, _ := json.Marshal(r)
		parts = append(parts, b)
		if !r.More {
			return parts
		}
		// The later parts carry Pending and More only.
		r = claimReply{OK: true}
	}
}

func fromClaimed(items []claimedItem) []hub.Envelope {
	out := make([]hub.Envelope, 0, len(items))
	for _, it := range items {
		if it.Kind < hub.KindSignal || it.Kind > hub.KindReport || len(it.Msg) > maxMsgLen {
			continue
		}
		out = append(out, hub.Envelope{Msg: it.Msg, Kind: it.Kind, From: it.From, Ref: it.Ref, Origin: it.Origin, Seq: it.Seq, Held: it.Held})
	}
	return out
}
