package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/proto"
)

// watchdog stops the test binary with every goroutine's stack if a handler
// of h runs for longer than limit, or if a probe does not return within
// limit: a deadlock must fail loudly, not hang the suite. It returns the
// probe runner; it stops when the test ends.
//
// Time here is the time the process could run (runClock): on a machine so
// loaded that the whole process stalls for seconds (the OS does not run
// it, or the garbage collector waits for threads the OS does not run), a
// handler that waits meanwhile is not stuck. A deadlock stops only the
// goroutines in it, while the clock goes on.
func watchdog(t testing.TB, h *Hub, limit time.Duration) func(what string, f func()) {
	t.Helper()
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	clock := runTime()
	go func() {
		tick := time.NewTicker(limit / 10)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if stuck := h.Stuck(clock.wallAgo(limit)); len(stuck) > 0 {
				die(fmt.Sprintf("handlers of %v running for over %v", stuck, limit))
			}
		}
	}()
	return func(what string, f func()) {
		done := make(chan struct{})
		go func() {
			start := clock.now()
			tick := time.NewTicker(limit / 10)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-stop:
					return
				case <-tick.C:
					if clock.now()-start > limit {
						die(what + " did not return within " + limit.String())
					}
				}
			}
		}()
		f()
		close(done)
	}
}

// runClock measures the time the process could run: it ticks every 10 ms
// and counts at most 20 ms per tick, so a stall of the whole process (no
// tick) adds nothing. wallAgo maps a span of run time back to wall time.
type runClock struct {
	mu      sync.Mutex
	run     time.Duration // run time so far
	samples []clockSample // the last minute, oldest first
}

type clockSample struct {
	wall time.Time
	run  time.Duration
}

// runTime is the package's run clock, started at its first use and
// running until the test binary exits.
var runTime = sync.OnceValue(func() *runClock {
	c := &runClock{samples: []clockSample{{wall: time.Now()}}}
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		last := time.Now()
		for now := range tick.C {
			{
				c.mu.Lock()
				c.run += min(now.Sub(last), 20*time.Millisecond)
				c.samples = append(c.samples, clockSample{now, c.run})
				if len(c.samples) > 6000 {
					c.samples = c.samples[1:]
				}
				c.mu.Unlock()
				last = now
			}
		}
	}()
	return c
})

func (c *runClock) now() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.run
}

// wallAgo returns the wall time at which the run clock read d less than now.
func (c *runClock) wallAgo(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	target := c.run - d
	i := sort.Search(len(c.samples), func(i int) bool { return c.samples[i].run > target })
	if i == 0 {
		return c.samples[0].wall.Add(-time.Nanosecond) // older than the history: nothing is that old
	}
	return c.samples[i-1].wall
}

func die(why string) {
	buf := make([]byte, 8<<20)
	fmt.Fprintf(os.Stderr, "watchdog: %s\n\n%s\n", why, buf[:runtime.Stack(buf, true)])
	panic("watchdog: " + why)
}

// relayer keeps a pair of room members signalling each other and records
// each round trip. It runs on its own goroutine, so it reports a failure
// instead of calling t.Fatal.
type relayer struct {
	a, b *tclient
	rtts []time.Duration
	err  error
	stop chan struct{}
	done chan struct{}
}

func startRelayer(a, b *tclient) *relayer { return startRelayerEvery(a, b, 0) }

// relayingPair starts a relayer between users a and b, in room lobby.
func relayingPair(ts *testServer) *relayer {
	ts.t.Helper()
	a, b := ts.dial("user=a"), ts.dial("user=b")
	a.join("lobby", "1")
	b.join("lobby", "1")
	a.expect(proto.TypePeerJoined)
	return startRelayer(a, b)
}

// startRelayerEvery starts a round trip every interval (0: back to back).
func startRelayerEvery(a, b *tclient, interval time.Duration) *relayer {
	r := &relayer{a: a, b: b, stop: make(chan struct{}), done: make(chan struct{})}
	sa, _ := json.Marshal(proto.Message{Type: proto.TypeSignal, ID: "s", To: b.peer(), Data: json.RawMessage(`{"i":1}`)})
	sb, _ := json.Marshal(proto.Message{Type: proto.TypeSignal, ID: "r", To: a.peer(), Data: json.RawMessage(`{"i":2}`)})
	go func() {
		defer close(r.done)
		for {
			select {
			case <-r.stop:
				return
			default:
			}
			start, runStart := time.Now(), runTime().now()
			if r.err = relayOnce(a, b, sa); r.err != nil {
				return
			}
			if r.err = relayOnce(b, a, sb); r.err != nil {
				return
			}
			// A stall of the whole process on a loaded machine is not the
			// hub's: a round trip counts at most the run time it took
			// (runClock, to its 10 ms tick).
			wall, run := time.Since(start), runTime().now()-runStart+10*time.Millisecond
			r.rtts = append(r.rtts, min(wall, run))
			if interval > 0 {
				time.Sleep(interval - time.Since(start)%interval) // pacing the probe
			}
		}
	}()
	return r
}

// relayOnce sends msg from one client and waits for the signal at the
// other, skipping room events and presence; an error to the sender (the
// signal refused) ends the wait.
func relayOnce(from, to *tclient, msg []byte) error {
	if err := from.ws.WriteMessage(websocket.TextMessage, msg); err != nil {
		return err
	}
	timeout := time.After(wait)
	for {
		select {
		case m := <-to.msgs:
			if m.Type == proto.TypeSignal {
				return nil
			}
		case m := <-from.msgs:
			if m.Type == proto.TypeError {
				return fmt.Errorf("relay refused: %s", m.Data)
			}
		case <-to.closed:
			return fmt.Errorf("connection closed: %v", to.closeErr)
		case <-timeout:
			return fmt.Errorf("no signal within %v", wait)
		}
	}
}

// finish stops the relayer and returns its round trips, sorted.
func (r *relayer) finish(t *testing.T) []time.Duration {
	t.Helper()
	close(r.stop)
	<-r.done
	if r.err != nil {
		t.Fatalf("relay: %v", r.err)
	}
	slices.Sort(r.rtts)
	return r.rtts
}

// checkRelay fails the test unless the members relayed throughout: the
// typical round trip (two relays) within 100 ms, and none stalled for as
// long as a slow consumer's write may block (WriteWait, 2 s here). The
// tests run under -race on shared machines, so the tail is logged rather
// than held to 100 ms; a freeze shows as seconds, and the watchdog catches
// one that lasts.
func checkRelay(t *testing.T, rtts []time.Duration) { checkRelayWithin(t, rtts, 1500*time.Millisecond) }

// checkFreezeRelay is checkRelay for the freeze tests of issue 12, which
// ask that the others keep relaying within 100 ms: 99 round trips of
// every 100 must. (Their p99 is about 10 ms on a busy 2-core machine
// under -race; the last percent is checkRelay's.)
func checkFreezeRelay(t *testing.T, rtts []time.Duration) {
	t.Helper()
	checkRelay(t, rtts)
	if p99 := rtts[len(rtts)*99/100]; p99 > 100*time.Millisecond {
		t.Errorf("relay slowed: p99 %v, want <= 100ms", p99)
	}
}

// checkRelayWithin is checkRelay with the longest round trip allowed: below
// the WriteWait of the test's hub, so that waiting on a slow consumer
// would show.
func checkRelayWithin(t *testing.T, rtts []time.Duration, limit time.Duration) {
	t.Helper()
	if len(rtts) < 20 {
		t.Fatalf("only %d round trips while the attack ran", len(rtts))
	}
	p50, p99, worst := rtts[len(rtts)/2], rtts[len(rtts)*99/100], rtts[len(rtts)-1]
	t.Logf("%d round trips: p50 %v, p99 %v, max %v", len(rtts), p50, p99, worst)
	if p50 > 100*time.Millisecond || worst >= limit {
		t.Errorf("relay stalled: p50 %v (want <= 100ms), max %v (want < %v)", p50, worst, limit)
	}
}

// pingCounter counts the hub's pings to a client that otherwise only reads.
func pingCounter(ts *testServer, user string) *atomic.Int64 {
	c := ts.dialRaw("user="+user, true)
	var n atomic.Int64
	def := c.ws.PingHandler()
	c.ws.SetPingHandler(func(data string) error { n.Add(1); return def(data) })
	go c.read()
	return &n
}

// freezeConfig makes slow consumers easy to reach: small queues, and
// pings fast enough to watch. The attackers fill a queue by its bytes
// (16 KiB, 2 KB signals); its room for 64 messages keeps the relaying
// members, to whom churn sends bursts of small room events, from being
// refused a signal when a loaded machine runs their readers late. A
// client that never reads sends nothing either: PongWait is long so that
// it is dropped for not reading, never for its silence, however long a
// loaded machine makes filling its queue take (else its session goes
// offline a resume window later, and a presence count the test waits for
// never comes).
func freezeConfig() Config {
	return Config{
		SendQueue: 64, SendQueueBytes: 16 << 10, AbsentQueue: 8,
		WriteWait: 2 * time.Second, PingPeriod: 100 * time.Millisecond, PongWait: time.Hour,
		MessageRate: 1e6, MessageBurst: 1e6, SignalBytesRate: 1 << 30, SignalBurstBytes: 1 << 30,
		PresenceInterval: 20 * time.Millisecond,
	}
}

// TestFreeze is the attack of issue 12: a client that never reads fills its
// queue, then joins a busy room, where room events keep arriving for it
// under the room's lock. The other members keep relaying within 100 ms,
// pings keep flowing to everyone else, the attacker is dropped, and
// Shutdown returns within its deadline.
func TestFreeze(t *testing.T) { forModes(t, testFreeze) }

func testFreeze(t *testing.T, mode serverMode) {
	ts := newTestServer(t, freezeConfig(), mode)
	probe := watchdog(t, ts.hub, 5*time.Second)
	var pairs []*relayer
	for i := range 3 {
		a, b := ts.dial(fmt.Sprint("user=a", i)), ts.dial(fmt.Sprint("user=b", i))
		a.join("lobby", "1")
		b.join("lobby", "1")
		a.expect(proto.TypePeerJoined)
		pairs = append(pairs, startRelayer(a, b))
	}
	pings := pingCounter(ts, "idle")

	attacker := ts.dialRaw("user=attacker&sndbuf=4096", true) // never reads
	accomplice := ts.dial("user=accomplice")
	accomplice.join("side", "1")
	attacker.send(proto.Message{Type: proto.TypeJoin, ID: "1", Room: "side"})
	target := decodeMember(t, accomplice.expect(proto.TypePeerJoined)).Peer
	// Fill the attacker's queue until signals to it are refused.
	pad := `{"pad":"` + fmt.Sprintf("%02000d", 0) + `"}`
	for i := 0; !refused(t, accomplice, target, i, pad); i++ {
		if i > 10000 {
			t.Fatal("the attacker's queue never filled")
		}
	}
	// Now it joins the busy room, and others churn through it: every join
	// and leave queues an event for the attacker under the room lock.
	attacker.send(proto.Message{Type: proto.TypeJoin, ID: "2", Room: "lobby"})
	pings0 := pings.Load()
	for i := range 20 {
		c := ts.dial(fmt.Sprint("user=churn", i))
		c.join("lobby", "1")
		c.send(proto.Message{Type: proto.TypeLeave, ID: "2", Room: "lobby"})
		c.expect(proto.TypeAck)
	}
	eventually(t, "the attacker to be dropped", func() bool { return ts.hub.Stats().SlowConsumers >= 1 })
	for _, p := range pairs {
		checkFreezeRelay(t, p.finish(t))
	}
	eventually(t, "pings to the idle client", func() bool { return pings.Load() > pings0+3 })
	shutdownWithin(t, ts, probe, 3*time.Second)
}

// refused sends a signal and a ping, and reports whether the signal was
// refused with peer_unavailable before the pong came.
func refused(t *testing.T, c *tclient, to string, i int, data string) bool {
	t.Helper()
	c.signal(to, "", fmt.Sprint("f", i), data)
	c.send(proto.Message{Type: proto.TypePing, ID: fmt.Sprint("p", i)})
	was := false
	for {
		m := c.next()
		switch {
		case m.Type == proto.TypeError && m.Ref == fmt.Sprint("f", i):
			was = true
		case m.Type == proto.TypePong:
			return was
		}
	}
}

// shutdownWithin runs Shutdown with a deadline and fails unless it returns
// by then (plus a little for the kill it does at the deadline).
func shutdownWithin(t *testing.T, ts *testServer, probe func(string, func()), d time.Duration) {
	t.Helper()
	probe("Shutdown", func() {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		start := time.Now()
		_ = ts.hub.Shutdown(ctx)
		if took := time.Since(start); took > d+time.Second {
			t.Errorf("Shutdown took %v with a %v deadline", took, d)
		}
	})
	noHubGoroutines(t)
}

// Two clients that never read flood each other: both are dropped, nobody
// else notices.
func TestFreezeTwoSlowConsumersTargetingEachOther(t *testing.T) {
	forModes(t, testTwoSlowConsumers)
}

func testTwoSlowConsumers(t *testing.T, mode serverMode) {
	ts := newTestServer(t, freezeConfig(), mode)
	probe := watchdog(t, ts.hub, 5*time.Second)
	pair := relayingPair(ts)
	pings := pingCounter(ts, "idle")

	x, y := ts.dialRaw("user=x&sndbuf=4096", true), ts.dialRaw("user=y&sndbuf=4096", true)
	x.send(proto.Message{Type: proto.TypeJoin, ID: "1", Room: "duel"})
	y.send(proto.Message{Type: proto.TypeJoin, ID: "1", Room: "duel"})
	eventually(t, "x and y in room duel", func() bool { return ts.hub.Stats().Members == 4 })
	xp, yp := peerIn(t, ts, "x"), peerIn(t, ts, "y")
	// Each floods until it is dropped (its writes then fail).
	flood := func(c *tclient, to string) {
		msg, _ := json.Marshal(proto.Message{Type: proto.TypeSignal, ID: "f", To: to, Data: json.RawMessage(`{"pad":"` + fmt.Sprintf("%04000d", 0) + `"}`)})
		for {
			_ = c.ws.SetWriteDeadline(time.Now().Add(wait))
			if c.ws.WriteMessage(websocket.TextMessage, msg) != nil {
				return
			}
		}
	}
	go flood(x, yp)
	go flood(y, xp)
	pings0 := pings.Load()
	eventually(t, "both to be dropped", func() bool { return ts.hub.Stats().SlowConsumers >= 2 })
	checkFreezeRelay(t, pair.finish(t))
	eventually(t, "pings to the idle client", func() bool { return pings.Load() > pings0+3 })
	shutdownWithin(t, ts, probe, 3*time.Second)
}

// peerIn finds the peer id of user's session (for clients that cannot read
// their welcome).
func peerIn(t *testing.T, ts *testServer, user string) string {
	t.Helper()
	for _, s := range ts.hub.sessions.collect(nil) {
		if s.member.User == user {
			return s.member.Peer
		}
	}
	t.Fatalf("no session of %s", user)
	return ""
}

// A client that never reads, subscribed to presence, while hundreds of
// sessions come and go: the presence flush finds its queue full and drops
// it without waiting; every other subscriber keeps getting presence.
func TestFreezeSlowConsumerDuringPresenceBurst(t *testing.T) {
	forModes(t, testSlowPresence)
}

func testSlowPresence(t *testing.T, mode serverMode) {
	ts := newTestServer(t, freezeConfig(), mode)
	probe := watchdog(t, ts.hub, 5*time.Second)
	watcher := ts.dial("user=watcher&presence=1")
	watcher.expect(proto.TypePresence) // the full list
	pair := relayingPair(ts)
	ts.dialRaw("user=slow&presence=1&sndbuf=4096", true) // never reads
	// Sessions come in tens and go, until the flushes have filled the slow
	// subscriber's socket and queue.
	for i := 0; ts.hub.Stats().SlowConsumers == 0; i++ {
		if i == 200 {
			t.Fatal("the slow subscriber was never dropped")
		}
		var burst []*tclient
		for j := range 10 {
			burst = append(burst, ts.dial(fmt.Sprint("user=burst", i, "-", j)))
		}
		waitCount(t, watcher, 14)
		for _, c := range burst {
			_ = c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
		}
		// The watcher, a, b and slow's session are left; the watcher,
		// which reads, heard every burst.
		waitCount(t, watcher, 4)
	}
	checkFreezeRelay(t, pair.finish(t))
	shutdownWithin(t, ts, probe, 3*time.Second)
}
