package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/proto"
)

// drop cuts a client's TCP connection without a close frame, as a network
// failure would, and waits until the hub has noticed.
func drop(t *testing.T, ts *testServer, c *tclient) {
	t.Helper()
	before := ts.hub.Stats().Connections
	_ = c.ws.NetConn().Close()
	eventually(t, "the hub to see the drop", func() bool { return ts.hub.Stats().Connections < before })
}

func TestResumeWithinWindow(t *testing.T) { forModes(t, testResumeWithinWindow) }

func testResumeWithinWindow(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{ResumeWindow: time.Minute}, mode)
	alice := ts.dial("user=alice")
	bob := ts.dial("user=bob")
	alice.join("r", "1")
	bob.join("r", "1")
	alice.expect(proto.TypePeerJoined)

	drop(t, ts, bob)
	alice.signal(bob.peer(), "", "while-away", `{"n":1}`)
	alice.ping("p1") // the signal was accepted: no error came first

	bob2 := ts.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	w := bob2.welcome
	if !w.Resumed || w.Peer != bob.peer() || len(w.Rooms) != 1 || w.Rooms[0] != "r" {
		t.Fatalf("resume welcome %+v", w)
	}
	if w.ResumeToken == "" || w.ResumeToken == bob.welcome.ResumeToken {
		t.Fatal("resume must hand out a fresh token")
	}
	m := bob2.expect(proto.TypeSignal)
	if m.From != alice.peer() || string(m.Data) != `{"n":1}` {
		t.Fatalf("queued signal from %q data %s", m.From, m.Data)
	}
	// Alice saw no peer-left or peer-joined: her next message is bob's signal.
	bob2.signal(alice.peer(), "r", "back", `{"n":2}`)
	if m := alice.expect(proto.TypeSignal); m.From != bob.peer() {
		t.Fatalf("from %q", m.From)
	}
	// The token is single-use.
	again := ts.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	if again.welcome.Resumed || again.peer() == bob.peer() {
		t.Fatalf("a used token resumed: %+v", again.welcome)
	}
	st := ts.hub.Stats()
	if st.ResumesOK != 1 || st.ResumesFailed != 1 || st.Queued != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestResumeTakesOverOpenSocket(t *testing.T) { forModes(t, testResumeTakesOverOpenSocket) }

func testResumeTakesOverOpenSocket(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{}, mode)
	bob := ts.dial("user=bob")
	bob.join("r", "1")
	bob2 := ts.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	if !bob2.welcome.Resumed || bob2.peer() != bob.peer() {
		t.Fatalf("welcome %+v", bob2.welcome)
	}
	bob.expectClose()
	bob2.ping("p")
	if st := ts.hub.Stats(); st.Sessions != 1 || st.Members != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSessionEndsAfterWindow(t *testing.T) { forModes(t, testSessionEndsAfterWindow) }

func testSessionEndsAfterWindow(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{ResumeWindow: 200 * time.Millisecond, PresenceInterval: 10 * time.Millisecond}, mode)
	alice := ts.dial("user=alice&presence=1")
	bob := ts.dial("user=bob")
	waitPresence(t, alice, proto.PresenceOnline, bob.peer())
	alice.join("r", "1")
	bob.join("r", "1")
	alice.expect(proto.TypePeerJoined)

	drop(t, ts, bob)
	left := alice.expect(proto.TypePeerLeft)
	var pl proto.PeerLeft
	_ = json.Unmarshal(left.Data, &pl)
	if pl.Peer != bob.peer() {
		t.Fatalf("peer-left %s", left.Data)
	}
	waitPresence(t, alice, proto.PresenceOffline, bob.peer())

	late := ts.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	if late.welcome.Resumed || late.peer() == bob.peer() {
		t.Fatalf("expired token resumed: %+v", late.welcome)
	}
	// The expired session's end counts it out just after telling alice.
	eventually(t, "two sessions, one room, one failed resume", func() bool {
		st := ts.hub.Stats()
		return st.ResumesFailed == 1 && st.Sessions == 2 && st.Rooms == 1
	})
}

func TestQueuedSignalExpiryIsReported(t *testing.T) { forModes(t, testQueuedSignalExpiryIsReported) }

func testQueuedSignalExpiryIsReported(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{ResumeWindow: 200 * time.Millisecond}, mode)
	alice := ts.dial("user=alice")
	bob := ts.dial("user=bob")
	alice.join("r", "1")
	bob.join("r", "1")
	alice.expect(proto.TypePeerJoined)
	drop(t, ts, bob)
	alice.signal(bob.peer(), "", "lost", `{}`)
	// bob never comes back: alice learns the signal was not delivered.
	for {
		m := alice.next()
		if m.Type == proto.TypeError {
			var e proto.Error
			_ = json.Unmarshal(m.Data, &e)
			if e.Code != proto.CodePeerUnavailable || m.Ref != "lost" {
				t.Fatalf("error %+v ref %q", e, m.Ref)
			}
			break
		}
	}
	if st := ts.hub.Stats(); st.Expired != 1 || st.Queued != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAbsentQueueIsBounded(t *testing.T) { forModes(t, testAbsentQueueIsBounded) }

func testAbsentQueueIsBounded(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{AbsentQueue: 2}, mode)
	alice := ts.dial("user=alice")
	bob := ts.dial("user=bob")
	alice.join("r", "1")
	bob.join("r", "1")
	alice.expect(proto.TypePeerJoined)
	drop(t, ts, bob)
	alice.signal(bob.peer(), "", "1", `{}`)
	alice.signal(bob.peer(), "", "2", `{}`)
	alice.signal(bob.peer(), "", "3", `{}`)
	alice.expectError(proto.CodePeerUnavailable, "3")
}

func TestResumeWithAnotherUsersToken(t *testing.T) { forModes(t, testResumeWithAnotherUsersToken) }

func testResumeWithAnotherUsersToken(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{}, mode)
	alice := ts.dial("user=alice")
	alice.join("r", "1")
	mallory := ts.dial("user=mallory&resume=" + url.QueryEscape(alice.welcome.ResumeToken))
	if mallory.welcome.Resumed || mallory.peer() == alice.peer() || len(mallory.welcome.Rooms) != 0 {
		t.Fatalf("takeover: %+v", mallory.welcome)
	}
	forged := ts.dial("user=alice&resume=forged")
	if forged.welcome.Resumed || forged.peer() == alice.peer() {
		t.Fatalf("forged token resumed: %+v", forged.welcome)
	}
	alice.ping("still-here")
	// alice's token was not consumed by the failed attempts.
	drop(t, ts, alice)
	back := ts.dial("user=alice&resume=" + url.QueryEscape(alice.welcome.ResumeToken))
	if !back.welcome.Resumed || back.peer() != alice.peer() {
		t.Fatalf("welcome %+v", back.welcome)
	}
	if st := ts.hub.Stats(); st.ResumesFailed != 2 || st.ResumesOK != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCleanCloseEndsSessionAtOnce(t *testing.T) { forModes(t, testCleanCloseEndsSessionAtOnce) }

func testCleanCloseEndsSessionAtOnce(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{ResumeWindow: time.Hour}, mode)
	alice := ts.dial("user=alice")
	bob := ts.dial("user=bob")
	alice.join("r", "1")
	bob.join("r", "1")
	alice.expect(proto.TypePeerJoined)
	_ = bob.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
	alice.expect(proto.TypePeerLeft)
}

// waitPresence reads presence messages until one of kind lists peer.
func waitPresence(t *testing.T, c *tclient, kind, peer string) proto.Presence {
	t.Helper()
	for {
		m := c.next()
		if m.Type != proto.TypePresence {
			continue
		}
		var p proto.Presence
		if err := json.Unmarshal(m.Data, &p); err != nil {
			t.Fatal(err)
		}
		if p.Kind != kind {
			continue
		}
		for _, mem := range p.Peers {
			if mem.Peer == peer {
				return p
			}
		}
	}
}

func TestPresence(t *testing.T) { forModes(t, testPresence) }

func testPresence(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{PresenceInterval: 20 * time.Millisecond, MaxPresenceList: 2}, mode)
	alice := ts.dial("user=alice&presence=1")
	full := nextPresence(t, alice)
	// A lone change is told at once, so alice's list has her in it.
	if full.Kind != proto.PresenceFull || len(full.Peers) != 1 || full.Peers[0].Peer != alice.peer() ||
		full.Count != 1 || full.Scope != proto.ScopeGlobal {
		t.Fatalf("first presence %+v", full)
	}
	bob := ts.dial("user=bob&role=admin")
	p := waitPresence(t, alice, proto.PresenceOnline, bob.peer())
	for _, mem := range p.Peers {
		if mem.Peer == bob.peer() && (mem.User != "bob" || mem.Role != proto.RoleAdmin) {
			t.Fatalf("member %+v", mem)
		}
	}
	// The window holds two: carol is counted, not listed.
	carol := ts.dial("user=carol&presence=1")
	if full = nextPresence(t, carol); full.Kind != proto.PresenceFull || len(full.Peers) != 2 {
		t.Fatalf("carol's full list %+v, want the two-peer window", full)
	}
	waitCount(t, alice, 3)
	waitCount(t, carol, 3)
	// Bob leaves: carol moves into the window.
	_ = bob.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	waitPresence(t, alice, proto.PresenceOffline, bob.peer())
	waitPresence(t, alice, proto.PresenceOnline, carol.peer())
	waitPresence(t, carol, proto.PresenceOffline, bob.peer())
	if p := waitPresence(t, carol, proto.PresenceOnline, carol.peer()); p.Count != 2 {
		t.Fatalf("count after bob left: %+v", p)
	}
}

// nextPresence returns the next message, which must be presence.
func nextPresence(t *testing.T, c *tclient) proto.Presence {
	t.Helper()
	m := c.next()
	var p proto.Presence
	if m.Type != proto.TypePresence || json.Unmarshal(m.Data, &p) != nil {
		t.Fatalf("got %s %s, want presence", m.Type, m.Data)
	}
	return p
}

// waitCount waits for a presence message that says count peers are online.
func waitCount(t *testing.T, c *tclient, count int) {
	t.Helper()
	for {
		m := c.next()
		var p proto.Presence
		if m.Type == proto.TypePresence && json.Unmarshal(m.Data, &p) == nil && p.Count == count {
			return
		}
	}
}

// A client that never reads is flooded with large signals by another: the
// flooder is refused (peer_unavailable once the target's queue is at its
// limits, rate_limited past its byte rate), the others in the hub keep
// relaying, and the reader that never reads is dropped when a write to it
// makes no progress for WriteWait.
func TestSlowConsumerIsDroppedOthersKeepGoing(t *testing.T) {
	forModes(t, testSlowConsumerIsDroppedOthersKeepGoing)
}

func testSlowConsumerIsDroppedOthersKeepGoing(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{AbsentQueue: 8, MessageRate: 1e6, MessageBurst: 1e6, WriteWait: time.Second,
		SignalBytesRate: 1 << 30, SignalBurstBytes: 1 << 30}, mode)
	slow := ts.dialRaw("user=slow", true) // never reads
	flood := ts.dial("user=flood")
	a := ts.dial("user=a")
	b := ts.dial("user=b")
	a.join("pair", "1")
	b.join("pair", "1")
	a.expect(proto.TypePeerJoined)

	// The slow client cannot read its welcome; learn its peer id from the
	// room instead.
	slow.send(proto.Message{Type: proto.TypeJoin, ID: "1", Room: "flood"})
	eventually(t, "slow to join", func() bool { return ts.hub.Stats().Members == 3 })
	peers := flood.join("flood", "j")
	if len(peers) != 1 {
		t.Fatalf("flood room peers %v", peers)
	}
	target := peers[0].Peer

	pad := strings.Repeat("x", 60000)
	msg, _ := json.Marshal(proto.Message{Type: proto.TypeSignal, ID: "f", To: target, Data: json.RawMessage(`{"pad":"` + pad + `"}`)})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			if flood.ws.WriteMessage(websocket.TextMessage, msg) != nil {
				return
			}
		}
	}()
	// Meanwhile a and b exchange signals, each within the expectation timeout.
	for i := 0; i < 50; i++ {
		a.signal(b.peer(), "", "x", `{"i":1}`)
		b.expect(proto.TypeSignal)
		b.signal(a.peer(), "", "y", `{"i":2}`)
		a.expect(proto.TypeSignal)
	}
	<-done
	flood.expectError(proto.CodePeerUnavailable, "f")
	eventually(t, "the slow consumer to be dropped", func() bool { return ts.hub.Stats().SlowConsumers >= 1 })
	a.ping("p")
	// The flooder is still connected: past its refused signals, a pong.
	flood.send(proto.Message{Type: proto.TypePing, ID: "alive"})
	for m := flood.next(); m.Type != proto.TypePong || m.Ref != "alive"; m = flood.next() {
		if m.Type != proto.TypeError || m.Ref != "f" {
			t.Fatalf("flooder got %s %s, want errors for its signals then a pong", m.Type, m.Data)
		}
	}
}

func TestShutdownTellsClientsToReconnect(t *testing.T) {
	forModes(t, testShutdownTellsClientsToReconnect)
}

func testShutdownTellsClientsToReconnect(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{ResumeWindow: time.Hour, PresenceInterval: time.Hour}, mode)
	alice := ts.dial("user=alice&presence=1")
	bob := ts.dial("user=bob")
	alice.join("r", "1")
	bob.join("r", "1")
	drop(t, ts, bob) // a session waiting for a resume: its timer must not leak

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := ts.hub.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	m := alice.next()
	for m.Type != proto.TypeReconnect {
		m = alice.next()
	}
	var rc proto.Reconnect
	if err := json.Unmarshal(m.Data, &rc); err != nil || rc.After <= 0 {
		t.Fatalf("reconnect %s", m.Data)
	}
	if code := alice.expectClose(); code != websocket.CloseServiceRestart {
		t.Fatalf("close code %d", code)
	}
	// New connections are told to reconnect at once.
	late := ts.dialRaw("user=late", false)
	late.expect(proto.TypeReconnect)
	if code := late.expectClose(); code != websocket.CloseServiceRestart {
		t.Fatalf("late close code %d", code)
	}
	noHubGoroutines(t)
}

// noHubGoroutines fails if any goroutine of the hub is still running.
func noHubGoroutines(t *testing.T) {
	t.Helper()
	var stacks string
	eventually(t, "hub goroutines to end", func() bool {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		for _, fn := range []string{"hub.(*conn).run", "hub.(*Hub).sweep", "hub.(*presence).flush",
			"hub.(*Hub).expire", "wsconn.(*Conn[...]).writeLoop", "wsconn.(*Conn[...]).Serve"} {
			if strings.Contains(stacks, fn) {
				return false
			}
		}
		return true
	})
}

// The HTTP handler returns once Accept has queued welcome: the hub serves
// the connection on its own goroutines, and Shutdown ends them all.
func TestServesAfterTheHandlerReturned(t *testing.T) {
	ts := newTestServer(t, Config{})
	alice := ts.dial("user=alice")
	bob := ts.dial("user=bob")
	alice.join("r", "1")
	bob.join("r", "1")
	alice.expect(proto.TypePeerJoined)
	bob.signal(alice.peer(), "", "s", `{"a":1}`)
	if m := alice.expect(proto.TypeSignal); m.From != bob.peer() {
		t.Fatalf("from %q", m.From)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := ts.hub.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code := alice.expectClose(); code != websocket.CloseServiceRestart {
		t.Fatalf("close code %d", code)
	}
	noHubGoroutines(t)
}

func TestQueuedSignalsExpireAfterTTL(t *testing.T) { forModes(t, testQueuedSignalsExpireAfterTTL) }

func testQueuedSignalsExpireAfterTTL(t *testing.T, mode serverMode) {
	const ttl = 100 * time.Millisecond
	ts := newTestServer(t, Config{ResumeWindow: time.Minute, AbsentQueueTTL: ttl}, mode)
	alice := ts.dial("user=alice")
	bob := ts.dial("user=bob")
	alice.join("r", "1")
	bob.join("r", "1")
	alice.expect(proto.TypePeerJoined)
	drop(t, ts, bob)
	alice.signal(bob.peer(), "", "old", `{"n":1}`)
	alice.ping("p") // the signal is queued
	queued := time.Now()
	// The TTL is the condition under test, so let it pass.
	eventually(t, "the TTL to pass", func() bool { return time.Since(queued) > 2*ttl })
	bob2 := ts.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	if !bob2.welcome.Resumed {
		t.Fatalf("welcome %+v", bob2.welcome)
	}
	alice.expectError(proto.CodePeerUnavailable, "old")
	bob2.ping("p") // the expired signal did not come before the pong
	if st := ts.hub.Stats(); st.Expired != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSignalsArriveIntact(t *testing.T) { forModes(t, testSignalsArriveIntact) }

// testSignalsArriveIntact has three senders relay distinct signals to bob
// as fast as they can, live, into his absent queue while he is away, and
// after his resume: every signal must arrive once and unchanged. Queued
// signals live in pooled buffers that the writer gives back once it has
// written them; a buffer given back too early would be written over by
// another signal, one user's signal leaking into another's.
func testSignalsArriveIntact(t *testing.T, mode serverMode) {
	const perRound = 150
	ts := newTestServer(t, Config{ResumeWindow: time.Minute, MessageRate: 1e6, MessageBurst: 1e6,
		SignalBytesRate: 1 << 30, SignalBurstBytes: 1 << 30, SendQueue: 4 * perRound, SendQueueBytes: 16 << 20,
		AbsentQueue: 3 * perRound}, mode)
	bob := ts.dial("user=bob")
	bob.join("r", "1")
	senders := map[string]*tclient{}
	for _, name := range []string{"alice", "carol", "dave"} {
		c := ts.dial("user=" + name)
		c.join("r", "1")
		for _, other := range append(slices.Collect(maps.Values(senders)), bob) {
			other.expect(proto.TypePeerJoined)
		}
		senders[name] = c
	}
	send := func(n int) {
		t.Helper()
		for i := range perRound {
			for name, s := range senders {
				k := fmt.Sprintf("%s-%d-%d", name, n, i)
				s.signal(bob.peer(), "r", k, `{"k":"`+k+`","p":"`+strings.Repeat(k, 1+i%60)+`"}`)
			}
		}
	}
	seen := map[string]bool{}
	receive := func(c *tclient) {
		t.Helper()
		for range perRound * len(senders) {
			m := c.expect(proto.TypeSignal)
			var d struct{ K, P string }
			if err := json.Unmarshal(m.Data, &d); err != nil {
				t.Fatalf("signal data %s: %v", m.Data, err)
			}
			var name string
			var i int
			if _, err := fmt.Sscanf(strings.ReplaceAll(d.K, "-", " "), "%s %d %d", &name, new(int), &i); err != nil ||
				senders[name] == nil || m.From != senders[name].peer() || d.P != strings.Repeat(d.K, 1+i%60) || seen[d.K] {
				t.Fatalf("signal from %s is not one that was sent, or came twice: %s", m.From, m.Data)
			}
			seen[d.K] = true
		}
	}
	send(0)
	receive(bob)
	drop(t, ts, bob)
	send(1) // into bob's absent queue
	for _, s := range senders {
		s.ping("sent") // every signal was accepted: an error would come first
	}
	bob2 := ts.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	receive(bob2)
	send(2)
	receive(bob2)
}
