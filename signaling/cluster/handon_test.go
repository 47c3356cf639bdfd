package cluster

import (
	"testing"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// TestHandOnThatCannotGoIsReported: what waited for a session here and
// cannot follow it to the node that took it (the outbox is full) is
// reported to its senders: a held signal this node tracks as well as one
// it does not. Before, Deliver's error was dropped, and a held signal of
// this node's own sender lost its tracking with it.
func TestHandOnThatCannotGoIsReported(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	alice := a.dial("user=alice")
	held := trackHeld(a, alice.peer(), "held", "bobpeer", "c")

	a.node.out.mu.Lock()
	saved := a.node.out.count
	a.node.out.count = a.node.cfg.Outbox // full
	a.node.out.mu.Unlock()
	a.node.handOn("d", "bobpeer", []hub.Envelope{
		{Kind: hub.KindSignal, Msg: []byte(`{}`), From: alice.peer(), Ref: "held", Origin: "a", Seq: held, Held: true},
		{Kind: hub.KindSignal, Msg: []byte(`{}`), From: alice.peer(), Ref: "queued"},
	})
	a.node.out.mu.Lock()
	a.node.out.count = saved
	a.node.out.mu.Unlock()

	told := map[string]bool{}
	for !told["held"] || !told["queued"] {
		m := alice.await(proto.TypeError, nil)
		told[m.Ref] = true
	}
}
