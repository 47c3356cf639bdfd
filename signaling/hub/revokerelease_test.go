package hub

import (
	"slices"
	"sync"
	"testing"

	"github.com/khadga/khadga/proto"
)

// goneSpy is a Delivery of a node whose sessions may go to others
// (Release): it records the sessions whose end it was told of.
type goneSpy struct {
	localDelivery
	mu        sync.Mutex
	gone      []string
	published []SessionState
}

func (d *goneSpy) Gone(peer string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gone = append(d.gone, peer)
}

func (d *goneSpy) Publish(st SessionState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.published = append(d.published, st)
}

// TestRevokeSparesASessionClaimedMeanwhile: Revoke and MoveLogin find a
// session local and matching, and a claim from another node takes it
// (Release) before they act on it. The session is the new node's then:
// that node ends or moves it (it hears of the revocation, or remembers it
// for the claim's connection). Revoke ended the proxy instead: this node's
// members saw the peer leave, presence said offline, and its end
// (Delivery.Gone) went out stamped after the new node's state once this
// node had heard of it, which made every node, the new one included,
// bury the live session (it published nothing after that). A move gave
// the proxy the new sign-in and published it as this node's.
func TestRevokeSparesASessionClaimedMeanwhile(t *testing.T) {
	for _, tc := range []struct {
		name string
		act  func(h *Hub) int
	}{
		{"revoke", func(h *Hub) int { return h.CloseUser("bob", proto.CodeRevoked, "user disabled") }},
		{"sign-out", func(h *Hub) int { return h.CloseLogin("bob", "L1", proto.CodeRevoked, "signed out") }},
		{"move", func(h *Hub) int { return h.MoveLogin("bob", "L1", "L2") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spy := &goneSpy{}
			ts := newTestServer(t, Config{Delivery: spy})
			alice := ts.dial("user=alice")
			bob := ts.dial("user=bob&login=L1")
			alice.join("lobby", "j1")
			bob.join("lobby", "j2")
			alice.expect(proto.TypePeerJoined)
			bob.ping("p") // its join's Publish is done

			var once sync.Once
			hook := func() {
				once.Do(func() {
					// Node B's claim, as bob's client resumes there.
					if _, _, err := ts.hub.Release([]byte(hashToken(bob.welcome.ResumeToken)), "bob", "B"); err != nil {
						t.Errorf("release: %v", err)
					}
				})
			}
			ts.hub.testHookRevokeMatched.Store(&hook)
			t.Cleanup(func() { ts.hub.testHookRevokeMatched.Store(nil) })
			spy.mu.Lock()
			spy.published = nil
			spy.mu.Unlock()

			if n := tc.act(ts.hub); n != 0 {
				t.Errorf("%s acted on %d sessions here; bob's was node B's by then", tc.name, n)
			}
			spy.mu.Lock()
			gone, published := slices.Clone(spy.gone), slices.Clone(spy.published)
			spy.mu.Unlock()
			if slices.Contains(gone, bob.peer()) {
				t.Errorf("this node told the cluster that bob's session ended; node B holds it")
			}
			for _, st := range published {
				if st.Member.Peer == bob.peer() {
					t.Errorf("this node published bob's state %+v; node B holds it", st)
				}
			}
			if n := ts.hub.RoomMembers("lobby"); n != 2 {
				t.Errorf("lobby has %d members here, want alice and bob's proxy", n)
			}
			if st := ts.hub.Stats(); st.Sessions != 1 || st.Remote != 1 || st.Revoked != 0 {
				t.Errorf("stats %+v, want alice's session and bob's proxy, none revoked", st)
			}
			alice.send(proto.Message{Type: proto.TypePing, ID: "p"})
			for m := alice.next(); m.Type != proto.TypePong; m = alice.next() {
				if m.Type == proto.TypePeerLeft {
					t.Errorf("alice saw bob leave: %s", m.Data)
				}
			}
		})
	}
}

// TestRevokeRacingRelease: a revocation and a claim from another node
// (Release) at the same moment, many times over. Either the revocation
// ends the session here first, and the claim finds nothing (ErrNotHere),
// or the claim takes it first, and the revocation leaves it to its new
// node. Release used to let go of the session's lock between taking its
// token and marking it another node's: a revocation in that gap found it
// still local, ended it, and its end went out although the claim had
// succeeded.
func TestRevokeRacingRelease(t *testing.T) {
	spy := &goneSpy{}
	ts := newTestServer(t, Config{Delivery: spy, MaxConnsPerUser: 1000})
	for i := range 200 {
		bob := ts.dial("user=bob")
		var released error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, _, released = ts.hub.Release([]byte(hashToken(bob.welcome.ResumeToken)), "bob", "B")
		}()
		go func() {
			defer wg.Done()
			ts.hub.CloseUser("bob", proto.CodeRevoked, "user disabled")
		}()
		wg.Wait()
		spy.mu.Lock()
		gone := slices.Contains(spy.gone, bob.peer())
		spy.mu.Unlock()
		switch {
		case released == nil && gone:
			t.Fatalf("round %d: the claim took bob's session and this node told the cluster it ended", i)
		case released != nil && !gone:
			t.Fatalf("round %d: the revocation won (release: %v), but no end went out", i, released)
		}
	}
}
