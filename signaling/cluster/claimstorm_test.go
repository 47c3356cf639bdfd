package cluster

import (
	"crypto/sha256"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// TestClaimStorm: one client resumes its session 30 times in a row, each
// time on the next of three nodes, at once after each welcome (claim
// after claim). Alice, in its room on node a, signals it throughout. At
// the end every node agrees on where the session is and on the room,
// alice saw no leave, and her signals each arrived or were refused.
func TestClaimStorm(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	hcfg := hub.Config{ResumeWindow: wait}
	cfg := Config{AckWait: 2 * time.Second} // default liveness: no node taken for gone on a loaded machine
	nodes := []*testNode{startNode(t, "a", urls, cfg, hcfg), startNode(t, "b", urls, cfg, hcfg), startNode(t, "c", urls, cfg, hcfg)}
	alice, bob := inLobby(nodes[0], nodes[1])
	cur := bob
	const rounds = 30
	for i := range rounds {
		tn := nodes[i%3]
		alice.signal(bob.peer(), fmt.Sprint("s", i), fmt.Sprintf(`{"n":%d}`, i))
		// A resume needs the node to know the session's current token,
		// which the last resume made a moment ago on another node.
		hash := sha256.Sum256([]byte(cur.welcome.ResumeToken))
		eventually(t, "the next node to know bob's token", func() bool {
			_, ok := tn.node.dir.byToken(hash[:])
			return ok || tn.hub.IsLocal(bob.peer())
		})
		dropSocket(cur)
		next := tn.dial("user=bob&resume=" + url.QueryEscape(cur.welcome.ResumeToken))
		if !next.welcome.Resumed || next.peer() != bob.peer() {
			t.Fatalf("round %d: resume on %s: %+v", i, tn.name, next.welcome)
		}
		cur = next
	}
	last := nodes[(rounds-1)%3].name
	eventually(t, "every node to agree where bob is, and on lobby", func() bool {
		for _, tn := range nodes {
			if tn.dirNode(bob.peer()) != last || tn.hub.RoomMembers("lobby") != 2 || tn.hub.IsLocal(bob.peer()) != (tn.name == last) {
				return false
			}
		}
		return true
	})
	alice.signal(bob.peer(), "final", `{"final":1}`)
	for m := cur.next(); ; m = cur.next() {
		if m.Type == proto.TypeSignal && string(m.Data) == `{"final":1}` {
			break
		}
	}
	alice.send(proto.Message{Type: proto.TypePing, ID: "p"})
	for m := alice.next(); m.Type != proto.TypePong; m = alice.next() {
		if m.Type == proto.TypePeerLeft {
			t.Fatalf("alice saw %s", m.Data)
		}
	}
}
