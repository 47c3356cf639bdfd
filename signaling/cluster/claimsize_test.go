package cluster

import (
	"encoding/json"
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
	// Default liveness: no node taken for gone on a loaded machine (with
	// fastConfig's 600 ms, one was, and b's signals refused). A claim
	// that times out is the failure, not a slow machine.
	cfg := Config{ClaimTimeout: wait}
	a := startNode(t, "a", urls, cfg, hcfg)
	b := startNode(t, "b", urls, cfg, hcfg)
	c := startNode(t, "c", urls, cfg, hcfg)
	alice, bob := inLobby(a, b)

	dropSocket(bob)
	eventually(t, "b to see bob's socket drop", func() bool { return b.hub.Stats().Connections == 0 })
	// Carol joins on a, before alice's signals: a sends her join to b
	// ahead of them, on the same subject, and b handles it first. (From
	// another node, it could reach b after b answered the claim.)
	carol := a.dial("user=carol")
	carol.join("lobby")
	alice.expectPeerJoined(carol.peer())
	const n, size = 20, 50 << 10
	pad := strings.Repeat("x", size)
	for i := range n {
		alice.signal(bob.peer(), fmt.Sprintf("s%d", i), fmt.Sprintf(`{"n":%d,"pad":%q}`, i, pad))
	}
	// a hears the fate of each: b holds it for bob, or it is refused
	// (alice is told). The test needs them all held, and carol's join
	// with them.
	var refused []string
	eventually(t, "a to hear from b of every signal to bob (held, or refused)", func() bool {
		for len(alice.msgs) > 0 {
			if m := <-alice.msgs; m.Type == proto.TypeError {
				refused = append(refused, m.Ref)
			}
		}
		return heldAt(a)+len(refused) == n
	})
	if len(refused) > 0 {
		t.Fatalf("signals %v to bob were refused; the test needs all %d held at b", refused, n)
	}

	start := time.Now()
	back := c.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	if !back.welcome.Resumed || back.peer() != bob.peer() {
		t.Fatalf("resume on c: %+v", back.welcome)
	}
	// Carol's join came first; the test takes it anywhere among the
	// signals.
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

// TestClaimParts: each part of a claim's answer is within the limit
// (when its items allow), the first has the state, every part but the
// last says more follow, and the parts' items are the answer's, in order.
func TestClaimParts(t *testing.T) {
	item := func(i, size int) claimedItem {
		return claimedItem{Kind: hub.KindSignal, Msg: []byte(fmt.Sprintf("%d:%s", i, strings.Repeat("x", size))), From: "p", Seq: uint64(i)}
	}
	for _, tc := range []struct {
		name         string
		items, size  int
		limit, parts int
	}{
		{"nothing waits", 0, 0, 1 << 20, 1},
		{"all in one", 10, 100, 1 << 20, 1},
		{"several", 20, 50 << 10, 1 << 20, 2},
		{"one item a part", 3, 2000, 100, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := claimReply{OK: true, Member: proto.Member{Peer: "p", User: "bob"}, Rooms: []string{"lobby"}, Order: map[string]uint64{"a": 3}}
			for i := range tc.items {
				r.Pending = append(r.Pending, item(i, tc.size))
			}
			parts := claimParts(r, tc.limit)
			if len(parts) < tc.parts {
				t.Fatalf("%d parts, want at least %d", len(parts), tc.parts)
			}
			var got []claimedItem
			for i, b := range parts {
				var p claimReply
				if err := json.Unmarshal(b, &p); err != nil {
					t.Fatal(err)
				}
				if len(b) > tc.limit && len(p.Pending) > 1 {
					t.Errorf("part %d: %d bytes, over %d", i, len(b), tc.limit)
				}
				if p.More != (i < len(parts)-1) || !p.OK {
					t.Errorf("part %d: ok %v, more %v", i, p.OK, p.More)
				}
				if i == 0 && (p.Member.User != "bob" || len(p.Rooms) != 1 || p.Order["a"] != 3) {
					t.Errorf("first part without the state: %+v", p)
				}
				got = append(got, p.Pending...)
			}
			if len(got) != tc.items {
				t.Fatalf("%d items, want %d", len(got), tc.items)
			}
			for i, it := range got {
				if it.Seq != uint64(i) {
					t.Fatalf("item %d has seq %d", i, it.Seq)
				}
			}
		})
	}
}
