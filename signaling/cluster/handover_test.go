package cluster

import (
	"net/url"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// TestHandoverKeepsTheOrigin: a signal from node a held on node b for bob,
// handed on to node c by Handover (the directory told b that c took bob),
// reaches bob, and node a's tracker, which was told "held", hears so from
// c: it does not tell alice the signal was lost. (Handover is one of two
// paths a resume on c takes when b answers its claim late; the test runs
// until it takes that one.)
func TestHandoverKeepsTheOrigin(t *testing.T) {
	for run := range 10 {
		if testHandoverOnce(t, run) {
			return
		}
	}
	t.Skip("the handover path never happened")
}

func testHandoverOnce(t *testing.T, run int) (handover bool) {
	urls := natstest.Start(t).ClientURL()
	ac := fastConfig()
	ac.HeldWait = 1500 * time.Millisecond
	a := startNode(t, "a", urls, ac, hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{ResumeWindow: time.Minute})
	slow := fastConfig()
	slow.ClaimTimeout = time.Nanosecond
	c := startNode(t, "c", urls, slow, hub.Config{})
	defer a.stop()
	defer b.stop()
	defer c.stop()

	alice := a.dial("user=alice")
	bob := b.dial("user=bob")
	alice.join("lobby")
	bob.join("lobby")
	alice.expectPeerJoined(bob.peer())
	dropSocket(bob)
	eventually(t, "b to see bob's socket drop", func() bool { return b.hub.Stats().Connections == 0 })
	alice.signal(bob.peer(), "while-away", `{"n":1}`)
	alice.send(proto.Message{Type: proto.TypePing, ID: "p1"})
	alice.await(proto.TypePong, nil)
	eventually(t, "the signal to be held on b", func() bool { return b.node.stats != nil && heldOn(a) })

	back := c.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	if !back.welcome.Resumed {
		t.Fatalf("resume on c: %+v", back.welcome)
	}
	alice.signal(bob.peer(), "after", `{"n":2}`)
	m := back.expectSignal(alice.peer())
	if string(m.Data) != `{"n":1}` {
		t.Logf("run %d: the claim's answer path (signal lost with it)", run)
		return false
	}
	t.Logf("run %d: bob got the held signal on c", run)
	// Past a's HeldWait: alice must hear nothing about it.
	deadline := time.After(2 * ac.HeldWait)
	for {
		select {
		case m := <-alice.msgs:
			if m.Type == proto.TypeError && m.Ref == "while-away" {
				t.Fatalf("bob received signal while-away, and alice was told: %s", m.Data)
			}
		case <-deadline:
			return true
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
