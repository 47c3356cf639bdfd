package cluster

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// TestClaimOfALargeQueue: a session whose absent queue holds more than
// one NATS message can carry (max_payload, 1 MB by default: here twenty
// signals of 50 KB, within every per-connection limit, and a room event)
// resumes on another node with all of it, in order, at once. The claim's
// answer used to be one message: past max_payload it was never sent, the
// claim timed out, the new node took the session without what waited for
// it, and the room event was lost without a word.
func TestClaimOfALargeQueue(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	hcfg := hub.Config{ResumeWindow: time.Minute}
	cfg := fastConfig()
	cfg.ClaimTimeout = wait // a claim that times out is the failure, not a slow machine
	a := startNode(t, "a", urls, cfg, hcfg)
	b := startNode(t, "b", urls, cfg, hcfg)
	c := startNode(t, "c", urls, cfg, hcfg)
	alice, bob := inLobby(a, b)

	dropSocket(bob)
	eventually(t, "b to see bob's socket drop", func() bool { return b.hub.Stats().Connections == 0 })
	const n, size = 20, 50 << 10
	pad := strings.Repeat("x", size)
	for i := range n {
		alice.signal(bob.peer(), fmt.Sprintf("s%d", i), fmt.Sprintf(`{"n":%d,"pad":%q}`, i, pad))
	}
	carol := c.dial("user=carol")
	carol.join("lobby")
	alice.expectPeerJoined(carol.peer())
	eventually(t, "b to hold every signal for bob", func() bool { return heldAt(a) == n })

	start := time.Now()
	back := c.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	if !back.welcome.Resumed || back.peer() != bob.peer() {
		t.Fatalf("resume on c: %+v", back.welcome)
	}
	// Carol's join came from c and alice's signals from a: b may have
	// kept them in either order.
	for i, joined := 0, false; i < n || !joined; {
		switch m := back.next(); {
		case m.Type == proto.TypeSignal && m.From == alice.peer():
			if want := fmt.Sprintf(`{"n":%d,`, i); !strings.HasPrefix(string(m.Data), want) {
				t.Fatalf("signal %d: got %.20s", i, m.Data)
			}
			i++
		case m.Type == proto.TypePeerJoined && strings.Contains(string(m.Data), carol.peer()):
			joined = true
		case m.Type == proto.TypeError:
			t.Fatalf("error %s (ref %s)", m.Data, m.Ref)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("resume took %v", d)
	}
}

// heldAt is how many of tn's signals wait, held, for absent sessions on
// other nodes.
func heldAt(tn *testNode) int {
	tn.node.track.mu.Lock()
	defer tn.node.track.mu.Unlock()
	k := 0
	for _, s := range tn.node.track.m {
		if s.held {
			k++
		}
	}
	return k
}
