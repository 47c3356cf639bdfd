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
