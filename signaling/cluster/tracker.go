package cluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// tracker remembers the signals this node sent to other nodes until their
// fate is known, so that no signal is lost silently: a signal is acked as
// delivered (forgotten), refused (its sender is told why), or held for a
// session whose socket is away (remembered until a delivered notice, for up
// to HeldWait). One that gets no answer within AckWait, or whose node is
// found gone, is reported to its sender as not delivered.
type tracker struct {
	n    *Node
	mu   sync.Mutex
	next uint64
	m    map[uint64]*tracked
}

type tracked struct {
	from, ref, to, node string
	deadline            time.Time
	held                bool
}

func newTracker(n *Node) *tracker { return &tracker{n: n, m: map[uint64]*tracked{}} }

// add tracks a signal and returns its sequence number.
func (t *tracker) add(from, ref, to, node string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next++
	t.m[t.next] = &tracked{from: from, ref: ref, to: to, node: node, deadline: time.Now().Add(t.n.cfg.AckWait)}
	t.n.stats.pending.Set(float64(len(t.m)))
	return t.next
}

// forget drops a signal that was never sent.
func (t *tracker) forget(seq uint64) { t.take(seq) }

// done forgets a signal that reached its session.
func (t *tracker) done(seq uint64) { t.take(seq) }

func (t *tracker) take(seq uint64) *tracked {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.m[seq]
	delete(t.m, seq)
	t.n.stats.pending.Set(float64(len(t.m)))
	return s
}

// settle applies an ack.
func (t *tracker) settle(a ack) {
	if a.status == ackHeld {
		t.mu.Lock()
		if s := t.m[a.seq]; s != nil {
			s.held = true
			s.deadline = time.Now().Add(t.n.cfg.HeldWait)
		}
		t.mu.Unlock()
		return
	}
	s := t.take(a.seq)
	if s == nil {
		return
	}
	switch a.status {
	case ackUnknown:
		t.report(s, proto.CodeUnknownPeer, fmt.Sprintf("no peer %s", s.to))
	case ackUnavailable:
		t.report(s, proto.CodePeerUnavailable, fmt.Sprintf("peer %s cannot take signals now; the signal was dropped", s.to))
	}
}

// moved notes that the signals seqs are now at node (handed on there).
func (t *tracker) moved(node string, seqs []uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, seq := range seqs {
		if s := t.m[seq]; s != nil {
			s.node = node
		}
	}
}

// failNode reports every signal sent to node, which is gone.
func (t *tracker) failNode(node string) {
	t.mu.Lock()
	var lost []*tracked
	for seq, s := range t.m {
		if s.node == node {
			lost = append(lost, s)
			delete(t.m, seq)
		}
	}
	t.n.stats.pending.Set(float64(len(t.m)))
	t.mu.Unlock()
	for _, s := range lost {
		t.n.stats.lost.WithLabelValues("node_gone").Inc()
		t.report(s, proto.CodePeerUnavailable, fmt.Sprintf("signal to peer %s was not delivered: its server is gone", s.to))
	}
}

// run reports the signals whose fate did not come in time.
func (t *tracker) run(ctx context.Context) {
	every(ctx, max(t.n.cfg.AckWait/10, 50*time.Millisecond), t.expire)
}

func (t *tracker) expire(now time.Time) {
	t.mu.Lock()
	var late []*tracked
	for seq, s := range t.m {
		if now.After(s.deadline) {
			late = append(late, s)
			delete(t.m, seq)
		}
	}
	t.n.stats.pending.Set(float64(len(t.m)))
	t.mu.Unlock()
	for _, s := range late {
		if s.held {
			// Its node says when a held signal is delivered or dropped
			// (Delivered, Undelivered); past HeldWait that word was lost,
			// for example with a claim's answer that came too late.
			t.n.stats.lost.WithLabelValues("held_no_answer").Inc()
			t.report(s, proto.CodePeerUnavailable, fmt.Sprintf("signal to peer %s was not delivered: it did not reach the peer in time", s.to))
			continue
		}
		t.n.stats.lost.WithLabelValues("no_answer").Inc()
		t.report(s, proto.CodePeerUnavailable, fmt.Sprintf("signal to peer %s was not delivered: its server did not answer", s.to))
	}
}

// report tells the sender of s, a session of this node, that its signal
// was not delivered.
func (t *tracker) report(s *tracked, code proto.Code, text string) {
	b, _ := proto.NewError(s.ref, code, "%s", text).Encode()
	_, _ = t.n.hub.DeliverLocal(s.from, hub.Envelope{Msg: b, Kind: hub.KindReport})
}
