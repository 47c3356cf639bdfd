package hub

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/khadga/khadga/proto"
)

// TestUnsentWhenResumeRacesDetach: the signals still queued on a
// connection when it ends are handed to detach (Result.Unsent), which
// keeps them for a resume. A client that resumes after the old reader took
// them but before detach took s.mu leaves the old detach finding s.conn !=
// c: the signals must still reach the resumed session or be reported to
// their sender, never vanish. Holding presence.mu (which detach takes
// first) opens that window every time ("race"); "control" is the usual
// order.
func TestUnsentWhenResumeRacesDetach(t *testing.T) {
	t.Run("control", func(t *testing.T) { testUnsentResume(t, false) })
	t.Run("race", func(t *testing.T) { testUnsentResume(t, true) })
}

func testUnsentResume(t *testing.T, hold bool) {
	ts := newTestServer(t, Config{SendQueue: 16, AbsentQueue: 16})
	alice := ts.dial("user=alice")
	alice.join("lobby", "j")
	sb := newStuckBob(t, ts, alice, "&presence=1")

	var bconn *conn
	for _, c := range ts.hub.conns.collect(nil) {
		if c.peer() == sb.welcome.Peer {
			bconn = c
		}
	}
	if hold {
		ts.hub.presence.mu.Lock()
	}
	_ = sb.bob.ws.NetConn().Close() // the client's socket drops (RST: unread data)
	eventually(t, "bob's old connection to end", func() bool {
		_, ok := ts.hub.conns.get(bconn.key)
		return !ok
	})
	bob2 := ts.dial("user=bob&resume=" + sb.welcome.ResumeToken)
	if !bob2.welcome.Resumed {
		t.Fatal("resume failed")
	}
	if hold {
		ts.hub.presence.mu.Unlock()
	}

	// Signal lastID was queued (not written) when bob's socket dropped: it
	// must reach bob's resumed connection, or alice must hear it was not
	// delivered.
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-bob2.msgs:
			if m.Type == proto.TypeSignal && signalID(m) == sb.lastID {
				t.Logf("bob2 got signal %s", sb.lastID)
				return
			}
		case m := <-alice.msgs:
			if m.Type == proto.TypeError && m.Ref == sb.lastID {
				t.Logf("alice told signal %s was not delivered", sb.lastID)
				return
			}
		case <-deadline:
			t.Fatalf("signal %s (queued when bob's socket dropped) was neither delivered to the resumed session nor reported to alice", sb.lastID)
		}
	}
}

// TestInFlightSignalFollowsTheResume: a signal the writer had taken from
// the queue but not written whole when the socket dropped (bob stopped
// reading in the middle of alice's 60 KB "big") reaches the resumed
// session first, ahead of the signals queued behind it (of which the
// absent queue keeps what it can, the rest reported to alice). It used to vanish:
// neither written, nor kept, nor reported to alice.
func TestInFlightSignalFollowsTheResume(t *testing.T) {
	ts := newTestServer(t, Config{SendQueue: 16, AbsentQueue: 16})
	alice := ts.dial("user=alice")
	alice.join("lobby", "j")
	sb := newStuckBob(t, ts, alice, "")

	_ = sb.bob.ws.NetConn().Close() // the client's socket drops
	eventually(t, "bob's old connection to end", func() bool {
		for _, c := range ts.hub.conns.collect(nil) {
			if c.peer() == sb.welcome.Peer {
				return false
			}
		}
		return true
	})
	bob2 := ts.dial("user=bob&resume=" + sb.welcome.ResumeToken)
	if !bob2.welcome.Resumed {
		t.Fatal("resume failed")
	}
	m := bob2.next()
	for m.Type != proto.TypeSignal {
		m = bob2.next()
	}
	if id := signalID(m); id != "big" {
		t.Fatalf("bob2's first signal is %s, want big (the one in flight), ahead of those queued behind it", id)
	}
}

// orderSpy is a Delivery whose only session elsewhere is bob, on node A,
// and which counts the signals offered to Order (taking none).
type orderSpy struct {
	bob    SessionState
	orders atomic.Int32
}

func (d *orderSpy) Deliver(string, string, Envelope) error { return nil }
func (d *orderSpy) Publish(SessionState)                   {}
func (d *orderSpy) Gone(string)                            {}
func (d *orderSpy) Claim([]byte, string) (SessionState, []Envelope, error) {
	return d.bob, nil, nil
}
func (d *orderSpy) Order(string, Envelope) (bool, bool)    { d.orders.Add(1); return false, false }
func (d *orderSpy) Delivered([]Envelope)                   {}
func (d *orderSpy) Undelivered([]Envelope)                 {}
func (d *orderSpy) SessionsElsewhere(string) int           { return 0 }
func (d *orderSpy) Elsewhere(string, []byte) Elsewhere     { return Elsewhere{} }
func (d *orderSpy) EndWaiting(string, string, string) bool { return false }

// TestSignalThatRacesTheClaimIsOrdered: alice's signal to bob, a session
// of node A, loads bob's ordered flag (not set: bob is A's) just before
// bob's client resumes here, and delivers after the claim made bob local.
// It must still be offered to Delivery.Order, like any signal of this
// node's to a session it claimed: signals alice sent before may still be
// coming back from A. It went straight onto bob's connection, unnumbered.
func TestSignalThatRacesTheClaimIsOrdered(t *testing.T) {
	bob := proto.Member{Peer: "bobbobbobbobbobb", User: "bob", Role: proto.RoleUser}
	spy := &orderSpy{bob: SessionState{Member: bob, Node: "A", Rooms: []string{"lobby"}}}
	ts := newTestServer(t, Config{Delivery: spy})
	ts.hub.Apply(spy.bob)
	alice := ts.dial("user=alice")
	alice.join("lobby", "j1")

	loaded, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func() { once.Do(func() { close(loaded); <-proceed }) }
	ts.hub.testHookRelayLoaded.Store(&hook)
	t.Cleanup(func() { ts.hub.testHookRelayLoaded.Store(nil) })
	alice.signal(bob.Peer, "", "s3", `{"n":3}`)
	select {
	case <-loaded: // alice's relay found bob not ordered, and waits
	case <-time.After(wait):
		t.Fatal("alice's signal never reached relay")
	}

	back := ts.dial("user=bob&resume=anything") // the spy's Claim hands bob over
	s, _ := ts.hub.sessions.get(bob.Peer)
	if !back.welcome.Resumed || !s.local() || s.ordered.Load() == 0 {
		t.Fatalf("bob's claim: welcome %+v, local %v, ordered %d", back.welcome, s.local(), s.ordered.Load())
	}
	close(proceed)
	m := back.expect(proto.TypeSignal)
	if n := spy.orders.Load(); n != 1 {
		t.Fatalf("signal %s reached the claimed session offered to Order %d times, want once", m.Data, n)
	}
}
