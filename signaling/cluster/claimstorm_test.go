package cluster

import (
	"crypto/sha256"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
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

// TestResumeBeforeTheTokenArrives: bob resumes on b, and at once on c,
// with the token b just gave him, before c has heard of it (c's directory
// is held until c's resume waits for the token). c waits for the token
// (Config.TokenWait) and claims the session from b: bob keeps his peer
// id. c gave him a new session instead, and his session waited out its
// resume window on b.
func TestResumeBeforeTheTokenArrives(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	hcfg := hub.Config{ResumeWindow: wait}
	cfg := Config{AckWait: 2 * time.Second, TokenWait: wait} // default liveness; a wait the test ends
	a, b, c := startNode(t, "a", urls, cfg, hcfg), startNode(t, "b", urls, cfg, hcfg), startNode(t, "c", urls, cfg, hcfg)
	alice, bob := inLobby(a, b)
	eventually(t, "c to see bob in lobby", func() bool { return c.hub.RoomMembers("lobby") == 2 })

	// c hears nothing of b's sessions until its resume waits for the
	// token, which the hook sees.
	c.node.dir.applyMu.Lock()
	var once sync.Once
	release := func() { once.Do(c.node.dir.applyMu.Unlock) }
	defer release()
	var waited atomic.Bool
	hook := func() { waited.Store(true); release() }
	c.node.testHookTokenWait.Store(&hook)

	dropSocket(bob)
	onB := b.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	if !onB.welcome.Resumed {
		t.Fatalf("resume on b: %+v", onB.welcome)
	}
	dropSocket(onB)
	onC := c.dial("user=bob&resume=" + url.QueryEscape(onB.welcome.ResumeToken))
	if !waited.Load() {
		t.Error("c's resume did not wait for the token")
	}
	if !onC.welcome.Resumed || onC.peer() != bob.peer() {
		t.Fatalf("resume on c with b's new token: %+v, want bob's session (%s)", onC.welcome, bob.peer())
	}
	alice.signal(bob.peer(), "s", `{"n":1}`)
	for m := onC.next(); m.Type != proto.TypeSignal; m = onC.next() {
	}
}
