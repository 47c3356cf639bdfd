package cluster

import (
	"crypto/sha256"
	"encoding/json"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

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

// TestRevocationDuringClaim: a revocation that reaches the claiming node
// before the claimed session is in place there (the old node holds only a
// proxy by then, and heard nothing yet) still ends the session when it
// attaches, on the node that heard it. Here node b hears the revocation
// and node a never does: without b's memory of it, bob would live on b.
func TestRevocationDuringClaim(t *testing.T) {
	_, b, alice, bob := bobAwayOnA(t)

	checked := strconv.FormatInt(time.Now().UnixNano(), 10) // the resuming connection's check
	if n := b.hub.CloseUser("bob", proto.CodeRevoked, "user disabled"); n != 0 {
		t.Fatalf("b ended %d of bob's sessions; it held none", n)
	}
	back := b.dial("user=bob&checked=" + checked + "&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	if !back.welcome.Resumed || back.peer() != bob.peer() {
		t.Fatalf("welcome on b %+v, want bob's session claimed", back.welcome)
	}
	m := back.await(proto.TypeError, nil)
	var e proto.Error
	if err := json.Unmarshal(m.Data, &e); err != nil || e.Code != proto.CodeRevoked || e.Message != "user disabled" {
		t.Fatalf("error %s, want revoked: user disabled", m.Data)
	}
	alice.await(proto.TypePeerLeft, func(m *proto.Message) bool { return m.Room == "lobby" })
}

// TestSignalOrderAcrossResume: signals alice streams to bob while bob
// resumes on another node reach bob's new socket in the order she sent
// them. They did not: signals on their way to bob's old node (b), which
// it forwards to the new one (c), came after newer ones that a sent
// straight to c once it heard of the move, and one that reached c during
// the claim went back to b and came round again later.
//
// Resumed on a, alice's own node, the signals still on their way to b come
// back to a after the claim, and those alice sends after it go from her to
// bob inside a: they must wait for the first (Node.Order).
func TestSignalOrderAcrossResume(t *testing.T) {
	t.Run("on a third node", func(t *testing.T) { signalOrderAcrossResume(t, "c") })
	t.Run("on the sender's node", func(t *testing.T) { signalOrderAcrossResume(t, "a") })
}

func signalOrderAcrossResume(t *testing.T, onto string) {
	urls := natstest.Start(t).ClientURL()
	fast := hub.Config{MessageRate: 1e6, MessageBurst: 1e6, SignalBytesRate: 1 << 30, SignalBurstBytes: 1 << 30,
		SendQueue: 1 << 14, SendQueueBytes: 64 << 20, AbsentQueue: 1 << 14, ResumeWindow: time.Minute}
	a := startNode(t, "a", urls, fastConfig(), fast)
	b := startNode(t, "b", urls, fastConfig(), fast)
	c := startNode(t, "c", urls, fastConfig(), fast)
	alice, bob := inLobby(a, b)
	eventually(t, "c to know both", func() bool { return c.hub.RoomMembers("lobby") == 2 })
	// A node numbers (and forwards numbered) only what it sends to nodes
	// it heard say they take numbers, in their heartbeats.
	nodes := []*testNode{a, b, c}
	eventually(t, "every node to hear that the others take numbered signals", func() bool {
		for _, n := range nodes {
			for _, o := range nodes {
				if n != o && !n.node.live.numbered(o.name) {
					return false
				}
			}
		}
		return true
	})
	to := map[string]*testNode{"a": a, "c": c}[onto]

	stop := make(chan struct{})
	sent := make(chan int, 1)
	go func() {
		pace := time.NewTicker(50 * time.Microsecond) // a steady stream, not a flood
		defer pace.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				sent <- i
				return
			case <-pace.C:
			}
			alice.signal(bob.peer(), "s"+strconv.Itoa(i), `{"i":`+strconv.Itoa(i)+`}`)
		}
	}()
	signalNo := func(m *proto.Message) int {
		var d struct{ I int }
		_ = json.Unmarshal(m.Data, &d)
		return d.I
	}
	// The stream reaches bob on b; then bob's socket drops and he resumes
	// on c while it flows.
	bob.await(proto.TypeSignal, func(m *proto.Message) bool { return signalNo(m) >= 50 })
	dropSocket(bob)
	back := to.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	if !back.welcome.Resumed {
		t.Fatalf("bob did not resume on %s: %+v", onto, back.welcome)
	}
	last, got := -1, 0
	check := func() {
		m := back.await(proto.TypeSignal, nil)
		i := signalNo(m)
		if i <= last {
			t.Fatalf("bob got signal %d after %d (%d received on the new socket)", i, last, got)
		}
		last, got = i, got+1
	}
	for got < 500 {
		check()
	}
	close(stop)
	n := <-sent
	for last < n-1 {
		check()
	}
	t.Logf("%d signals in order on the new socket", got)
}

// TestSignalOrderAcrossResumeOntoSendersNode: alice, on node b, signals
// bob, on node a; bob's socket drops and he resumes on b, alice's own
// node, while her signals s1 and s2 are still on their way to a. a
// forwards them back to b, a hop after the claim, and alice's next signal,
// s3, goes from her to bob inside b: it must not overtake them (an ICE
// candidate before its offer). It did: signals from a sender on the node
// a peer resumes on went straight to the peer.
//
// a's handling of b's messages is held while alice sends s1 and s2, so
// that the claim finds neither (deterministic: normally the order in which
// a signal and the claim leave b and are handled on a decides it). With a
// signal s0 delivered before, a's answer to the claim says which of b's
// signals it expects next; without, b expects all it numbered for bob,
// from the first: b's order of its own signals to bob starts at the
// number the answer names (checked directly: a b that expected 1 anyway
// would deliver the same signals in the same order, only orderWait
// later). And if s1 and s2 do not come back in time, s3 waits orderWait
// for them, and no more than run's next look after that (they, late,
// follow it).
func TestSignalOrderAcrossResumeOntoSendersNode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before bool   // s0 reaches bob on a first
		lost   bool   // s1 and s2 come back only after s3 is delivered
		next   uint64 // the first of b's numbers b expects after the claim
	}{
		{"first signals", false, false, 1},
		{"the claim's answer names b", true, false, 2},
		{"the wait is bounded", false, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			urls := natstest.Start(t).ClientURL()
			a := startNode(t, "a", urls, fastConfig(), hub.Config{ResumeWindow: time.Minute})
			b := startNode(t, "b", urls, fastConfig(), hub.Config{})
			alice, bob := inLobby(b, a)
			// Until b hears a's heartbeat, it numbers nothing it sends there.
			eventually(t, "b to hear that a takes numbered signals", func() bool { return b.node.live.numbered("a") })
			if tc.before {
				alice.signal(bob.peer(), "s0", `{"n":0}`)
				bob.expectSignal(alice.peer())
			}
			dropSocket(bob)
			eventually(t, "a to see bob's socket drop", func() bool { return a.hub.Stats().Connections == 0 })

			entered, free := holdFirstDelivery(t, a)
			alice.signal(bob.peer(), "s1", `{"n":1}`)
			alice.signal(bob.peer(), "s2", `{"n":2}`)
			alice.send(proto.Message{Type: proto.TypePing, ID: "p0"})
			alice.await(proto.TypePong, nil) // b has sent both to a
			select {
			case <-entered:
			case <-time.After(wait):
				t.Fatal("alice's signals never reached node a")
			}

			back := b.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
			if !back.welcome.Resumed || back.peer() != bob.peer() {
				t.Fatalf("resume on b: %+v", back.welcome)
			}
			b.node.ord.inMu.Lock()
			own := b.node.ord.in[bob.peer()][b.name]
			var next uint64
			if own != nil {
				next = own.next
			}
			b.node.ord.inMu.Unlock()
			if next != tc.next {
				t.Fatalf("after the claim b expects its own signals to bob from %d (0: no order), want from %d", next, tc.next)
			}
			sent := time.Now()
			alice.signal(bob.peer(), "s3", `{"n":3}`)
			want := []string{`{"n":1}`, `{"n":2}`, `{"n":3}`}
			if tc.lost {
				m := back.expectSignal(alice.peer())
				took := time.Since(sent)
				if string(m.Data) != `{"n":3}` {
					t.Fatalf("bob got %s, want s3 alone", m.Data)
				}
				// At least orderWait: it is let go only when its wait,
				// which began after sent, is over. At most run's next
				// look after that, with slack for a loaded machine.
				if limit := orderWait + orderTick + time.Second; took < orderWait || took > limit {
					t.Fatalf("s3 reached bob %v after it was sent, s1 and s2 still held on a; want %v to %v", took, orderWait, limit)
				}
				t.Logf("s3 reached bob %v after it was sent, s1 and s2 still held on a", took.Round(time.Millisecond))
				want = want[:2] // late, delivered as they come
			} else {
				alice.send(proto.Message{Type: proto.TypePing, ID: "p1"})
				alice.await(proto.TypePong, nil) // b has handled s3
			}
			free()
			for _, w := range want {
				if m := back.expectSignal(alice.peer()); string(m.Data) != w {
					t.Fatalf("bob got %s from alice, want %s", m.Data, w)
				}
			}
			// Nothing of b's is on its way any more: the hub is told to
			// send alice's signals to bob straight again.
			eventually(t, "b's order of its own signals to bob to end", func() bool {
				_, done := b.node.Order(bob.peer(), hub.Envelope{Kind: hub.KindSignal})
				return done
			})
		})
	}
}

// TestHandoverTakesEarlySignalsAlong: as in
// TestSignalOrderAcrossResumeOntoSendersNode, bob resumes on b, alice's
// node, while her s1 and s2 are held on a, and her s3 waits in b's order
// for them. Then bob's client resumes on c, whose claim b does not answer:
// c takes bob from the directory, and b lets him go when the directory
// tells it (Handover). s3 must go on to c then, as an answered claim
// sends what waits on: it stayed in b's order until run let it go, and
// alice's s4, sent straight to c, overtook it.
func TestHandoverTakesEarlySignalsAlong(t *testing.T) {
	// s3 must still be early when the test looks, after a resume, a signal
	// and a ping: under CI's load those took longer than orderWait once,
	// and s3 went straight to bob (or run let it go) first.
	// Registered before the nodes start, this cleanup runs after they stop.
	w := orderWait
	t.Cleanup(func() { orderWait = w })
	orderWait = 10 * time.Second
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{ResumeWindow: time.Minute})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{ResumeWindow: time.Minute})
	c := startNode(t, "c", urls, fastConfig(), hub.Config{})
	alice, bob := inLobby(b, a)
	eventually(t, "b to hear that a and c take numbered signals", func() bool {
		return b.node.live.numbered("a") && b.node.live.numbered("c")
	})
	dropSocket(bob)
	eventually(t, "a to see bob's socket drop", func() bool { return a.hub.Stats().Connections == 0 })

	entered, _ := holdFirstDelivery(t, a) // held until the test ends
	alice.signal(bob.peer(), "s1", `{"n":1}`)
	alice.signal(bob.peer(), "s2", `{"n":2}`)
	// b has sent both to a before bob resumes there: s2 handled after the
	// resume would wait in b's order too (rightly, behind s1).
	alice.send(proto.Message{Type: proto.TypePing, ID: "p0"})
	alice.await(proto.TypePong, nil)
	select {
	case <-entered:
	case <-time.After(wait):
		t.Fatal("alice's signals never reached node a")
	}
	onB := b.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	if !onB.welcome.Resumed {
		t.Fatalf("resume on b: %+v", onB.welcome)
	}
	alice.signal(bob.peer(), "s3", `{"n":3}`)
	alice.send(proto.Message{Type: proto.TypePing, ID: "p1"})
	alice.await(proto.TypePong, nil) // b has handled s3
	// s3 waits for s1 and s2 for as long as the test takes: the hand-over,
	// not run, must send it on.
	o := b.node.ord
	o.inMu.Lock()
	st := o.in[bob.peer()][b.name]
	early := st != nil && len(st.early) == 1
	if early {
		st.since = time.Now().Add(time.Hour)
	}
	o.inMu.Unlock()
	if !early {
		t.Fatal("s3 does not wait in b's order")
	}

	// b stops answering claims: c takes bob from the directory.
	for _, s := range b.node.subs {
		if s.Subject == b.node.subject("node", "b", "claim") {
			if err := s.Unsubscribe(); err != nil {
				t.Fatal(err)
			}
		}
	}
	tok := sha256.Sum256([]byte(onB.welcome.ResumeToken))
	eventually(t, "c to know bob's new token", func() bool {
		st, ok := c.node.dir.byToken(tok[:])
		return ok && st.Node == "b"
	})
	onC := c.dial("user=bob&resume=" + url.QueryEscape(onB.welcome.ResumeToken))
	if !onC.welcome.Resumed {
		t.Fatalf("resume on c: %+v", onC.welcome)
	}
	eventually(t, "b to let bob go", func() bool { return !b.hub.IsLocal(bob.peer()) })
	alice.signal(bob.peer(), "s4", `{"n":4}`)
	for _, w := range []string{`{"n":3}`, `{"n":4}`} {
		if m := onC.expectSignal(alice.peer()); string(m.Data) != w {
			t.Fatalf("bob got %s from alice on c, want %s", m.Data, w)
		}
	}
}

// holdFirstDelivery holds n's handler of the first signal delivered to it
// from another node: entered closes when it is held, and free lets it go
// (also at cleanup, before the nodes stop: Close waits for handlers).
func holdFirstDelivery(t *testing.T, n *testNode) (entered <-chan struct{}, free func()) {
	in, release := make(chan struct{}), make(chan struct{})
	var once, released sync.Once
	free = func() { released.Do(func() { close(release) }) }
	t.Cleanup(free)
	hook := func(m *nats.Msg) {
		if len(m.Data) > 0 && (m.Data[0] == opDeliver || m.Data[0] == opNumbered) {
			once.Do(func() { close(in); <-release })
		}
	}
	n.node.testHookHandle.Store(&hook)
	return in, free
}
