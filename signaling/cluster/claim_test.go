package cluster

import (
	"net/url"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// TestLateClaimAnswerLosesNothingSilently: the old node (b) answers a
// claim after the new node (c) gave up waiting (ClaimTimeout, forced tiny
// here; in production any answer slower than 2 s) and took the session
// from the directory. b's Release has moved what waited for the session
// into the answer, which nobody reads: each such signal must still reach
// the session or be reported to its sender, never vanish.
func TestLateClaimAnswerLosesNothingSilently(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	b := startNode(t, "b", urls, fastConfig(), hub.Config{ResumeWindow: time.Minute})
	slow := fastConfig()
	slow.ClaimTimeout = time.Nanosecond // the reply always arrives "late"
	c := startNode(t, "c", urls, slow, hub.Config{})

	cath := b.dial("user=cath")
	bob := b.dial("user=bob")
	cath.join("lobby")
	bob.join("lobby")
	cath.expectPeerJoined(bob.peer())
	eventually(t, "c to know bob", func() bool { return c.hub.RoomMembers("lobby") == 2 })

	dropSocket(bob)
	eventually(t, "b to see bob's socket drop", func() bool { return b.hub.Stats().Connections == 1 })
	cath.signal(bob.peer(), "while-away", `{"n":1}`)
	cath.send(proto.Message{Type: proto.TypePing, ID: "p1"})
	cath.await(proto.TypePong, nil) // the signal waits in bob's absent queue on b

	back := c.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	if !back.welcome.Resumed || back.peer() != bob.peer() {
		t.Fatalf("resume on c: %+v", back.welcome)
	}
	eventually(t, "b to know bob moved to c", func() bool { return !b.hub.IsLocal(bob.peer()) })

	// Everything b had for bob has been handed on by now (a Handover
	// Delivers before the proxy is pointed at c). A later signal goes
	// the same way, after it.
	cath.signal(bob.peer(), "after", `{"n":2}`)
	if m := back.expectSignal(cath.peer()); string(m.Data) == `{"n":1}` {
		return // handed on after all
	}
	// Lost with the answer: cath hears of it (b tracked it), within AckWait.
	cath.await(proto.TypeError, func(m *proto.Message) bool { return m.Ref == "while-away" })
}
