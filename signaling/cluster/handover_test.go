package cluster

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// TestHandoverKeepsTheOrigin: a signal from node a held on node b for bob,
// handed on to node c by Handover (c took bob from the directory, as it
// does when b does not answer its claim, and the directory told b),
// reaches bob, and node a's tracker, which was told "held", hears so from
// c: it does not tell alice the signal was lost.
func TestHandoverKeepsTheOrigin(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	ac := fastConfig()
	ac.HeldWait = 1500 * time.Millisecond
	a := startNode(t, "a", urls, ac, hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{ResumeWindow: time.Minute})
	c := startNode(t, "c", urls, fastConfig(), hub.Config{})

	alice, bob := inLobby(a, b)
	dropSocket(bob)
	eventually(t, "b to see bob's socket drop", func() bool { return b.hub.Stats().Connections == 0 })
	alice.signal(bob.peer(), "while-away", `{"n":1}`)
	eventually(t, "the signal to be held on b", func() bool { return heldOn(a) })

	// b stops answering claims: c's finds no responder and takes bob from
	// the directory, and b hears of it there (Handover), never by a claim.
	for _, s := range b.node.subs {
		if s.Subject == b.node.subject("node", "b", "claim") {
			if err := s.Unsubscribe(); err != nil {
				t.Fatal(err)
			}
		}
	}
	back := c.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	if !back.welcome.Resumed {
		t.Fatalf("resume on c: %+v", back.welcome)
	}
	if m := back.expectSignal(alice.peer()); string(m.Data) != `{"n":1}` {
		t.Fatalf("bob's first signal on c is %s, want the one held on b", m.Data)
	}
	// Past a's HeldWait: alice hears nothing about it.
	deadline := time.After(2 * ac.HeldWait)
	for {
		select {
		case m := <-alice.msgs:
			if m.Type == proto.TypeError && m.Ref == "while-away" {
				t.Fatalf("bob received signal while-away, and alice was told: %s", m.Data)
			}
		case <-deadline:
			return
		}
	}
}

// heldOn reports whether a's tracker has a signal marked held.
func heldOn(a *testNode) bool {
	t := a.node.track
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.m {
		if s.held {
			return true
		}
	}
	return false
}

// TestHandedOnSignalFollowsItsNode: a held signal that its node handed on
// to another (Handover) is tracked by its origin at the new node, from
// the hand-on's word (moved): the old node's death does not report it
// lost while the new node may still deliver it; the new node's does.
func TestHandedOnSignalFollowsItsNode(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	alice := a.dial("user=alice")
	tr := a.node.track
	seq := trackHeld(a, alice.peer(), "r1", "bob-peer", "b")

	obs := natstest.Connect(t, urls)
	for _, bad := range [][]byte{appendMoved(nil, "no.dots", []uint64{seq}), appendMoved(nil, "c", []uint64{seq})[:3]} {
		if err := obs.Publish(a.node.subject("node", "a"), bad); err != nil {
			t.Fatal(err)
		}
	}
	if err := obs.Publish(a.node.subject("node", "a"), appendMoved(nil, "c", []uint64{seq})); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a to track the signal at c", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return tr.m[seq] != nil && tr.m[seq].node == "c"
	})
	if n := testutil.ToFloat64(a.node.stats.badMessages); n != 2 {
		t.Errorf("bad messages counted %v, want the 2 malformed moves", n)
	}

	tr.failNode("b")
	alice.send(proto.Message{Type: proto.TypePing, ID: "p"})
	for m := alice.next(); m.Type != proto.TypePong; m = alice.next() {
		if m.Type == proto.TypeError && m.Ref == "r1" {
			t.Fatalf("b's death reported the signal c holds: %s", m.Data)
		}
	}
	tr.failNode("c")
	m := alice.await(proto.TypeError, func(m *proto.Message) bool { return m.Ref == "r1" })
	if !strings.Contains(string(m.Data), "its server is gone") {
		t.Fatalf("report %s, want the new node's death", m.Data)
	}
}

// TestHandOnTellsTheOrigin: a node that hands a held signal on tells the
// signal's origin where it went.
func TestHandOnTellsTheOrigin(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	b := startNode(t, "b", urls, fastConfig(), hub.Config{})
	sub := listen(t, urls, b.node.subject("node", "z"))
	b.node.handOn("c", "bob-peer", []hub.Envelope{
		{Kind: hub.KindSignal, Held: true, Origin: "z", Seq: 42, From: "alice-peer", Ref: "r1", Msg: []byte(`{}`)},
		{Kind: hub.KindSignal, Held: true, Origin: "z", Seq: 43, From: "alice-peer", Ref: "r2", Msg: []byte(`{}`)},
	})
	m, err := sub.NextMsg(wait)
	if err != nil {
		t.Fatalf("origin z heard nothing: %v", err)
	}
	node, seqs, err := decodeMoved(m.Data)
	if err != nil || node != "c" || len(seqs) != 2 || seqs[0] != 42 || seqs[1] != 43 {
		t.Fatalf("moved %q %v (%v), want c [42 43]", node, seqs, err)
	}
}
