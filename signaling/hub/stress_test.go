package hub

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/khadga/khadga/internal/stresspeers"
	"github.com/khadga/khadga/proto"
)

// stressDuration is how long TestStress runs: 30 s, or HUB_STRESS_DURATION
// for a longer soak.
func stressDuration(t *testing.T) time.Duration {
	if v := os.Getenv("HUB_STRESS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("HUB_STRESS_DURATION: %v", err)
		}
		return d
	}
	return 30 * time.Second
}

// TestStress runs 200 clients against one hub, half over ws:// and half
// over wss://, for 30 s. Each joins and leaves rooms, signals, resumes,
// closes abruptly or cleanly, floods, sends garbage and stops reading for
// a while, at random. A watchdog stops the test with every goroutine's
// stack if a handler runs for more than 5 s, or a lock of the hub is held
// for that long (probeLocks); a probe pair keeps relaying
// throughout; at the end every session has ended, Shutdown returns in time
// and the goroutine count is back to where it started.
func TestStress(t *testing.T) {
	runStress(t, proto.ScopeGlobal, stressDuration(t))
}

// TestStressRoomsScope is TestStress with the presence feed scoped to
// rooms, where every join and leave also changes presence views under
// the presence lock (Hub.setMembers), for a third of the time.
func TestStressRoomsScope(t *testing.T) {
	runStress(t, proto.ScopeRooms, stressDuration(t)/3)
}

func runStress(t *testing.T, scope string, d time.Duration) {
	if testing.Short() {
		t.Skip("stress test: not in -short")
	}
	baseline := runtime.NumGoroutine()
	ts := newTestServer(t, Config{
		ResumeWindow: 2 * time.Second, WriteWait: 3 * time.Second,
		// Keepalive that the machine's load cannot trip: a client whose
		// reader is starved of CPU for seconds is not dead.
		PingPeriod: time.Second, PongWait: 15 * time.Second,
		SendQueue: 32, SendQueueBytes: 64 << 10, AbsentQueue: 16,
		PresenceInterval: 50 * time.Millisecond, MaxConnsPerUser: 8,
		PresenceScope: scope,
	})
	wss := ts.also(true)
	probe := watchdog(t, ts.hub, 5*time.Second)

	stopLocks := probeLocks(ts.hub, probe)

	pa, pb := ts.dial("user=probe-a"), wss.dial("user=probe-b")
	pa.join("probe", "1")
	pb.join("probe", "1")
	pa.expect(proto.TypePeerJoined)
	relay := startRelayerEvery(pa, pb, 20*time.Millisecond)

	reg := &stresspeers.Registry{}
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	var stats stressStats
	for i := range 200 {
		front := ts
		if i%2 == 1 {
			front = wss
		}
		sc := &stressClient{front: front, user: fmt.Sprint("u", i%60), peers: stresspeers.Peers{Reg: reg}, stats: &stats,
			rng: rand.New(rand.NewPCG(uint64(i), 42))}
		wg.Add(1)
		go func() { defer wg.Done(); sc.run(end) }()
	}
	wg.Wait()
	stopLocks()
	rtts := relay.finish(t)
	t.Logf("stress: %s; hub %+v", stats.String(), ts.hub.Stats())
	// A stall that lasts is the watchdog's to catch (5 s); the probe checks
	// that relaying never stopped for that long either.
	checkRelayWithin(t, rtts, 5*time.Second)
	pa.ws.Close()
	pb.ws.Close()

	eventually(t, "every session to end", func() bool {
		st := ts.hub.Stats()
		return st.Connections == 0 && st.Sessions == 0 && st.Rooms == 0 && st.Members == 0
	})
	shutdownWithin(t, ts, probe, 5*time.Second)
	ts.srv.Close()
	wss.srv.Close()
	eventually(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseline+2 })
}

// probeLocks takes each of h's locks in turn, one at a time, under the
// watchdog's probe, until the returned stop is called: a lock held for
// more than the watchdog's limit by anyone (a handler, the sweeper, a
// presence flush, Delivery) stops the test with every goroutine's stack,
// whether or not a handler waits for it.
func probeLocks(h *Hub, probe func(string, func())) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	lock := func(l sync.Locker) { l.Lock(); l.Unlock() }
	go func() {
		defer close(done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			probe("taking every lock of the hub (the probeLocks goroutine's stack shows which)", func() {
				lock(&h.mu)
				lock(&h.presence.mu)
				lock(&h.users.mu)
				lock(&h.revoked.mu)
				for _, r := range h.rooms.collect(nil) {
					lock(&r.mu)
				}
				for _, s := range h.sessions.collect(nil) {
					lock(&s.roomsMu)
					lock(&s.mu)
				}
			})
		}
	}()
	return func() { close(quit); <-done }
}

type stressStats struct {
	dials, resumes, drops, closes, signals, joins, pauses, refused atomic.Int64
}

func (s *stressStats) String() string {
	return fmt.Sprintf("%d dials (%d resumed), %d abrupt drops, %d clean closes, %d signals, %d joins, %d reading pauses, %d refused dials",
		s.dials.Load(), s.resumes.Load(), s.drops.Load(), s.closes.Load(), s.signals.Load(), s.joins.Load(), s.pauses.Load(), s.refused.Load())
}

// stressClient is one randomly behaving client. Its goroutine writes; a
// reader goroutine per connection reads (and sometimes stops reading).
type stressClient struct {
	front *testServer
	user  string
	peers stresspeers.Peers // the resume token and peers the reader saw
	stats *stressStats
	rng   *rand.Rand
	ws    *websocket.Conn
	rooms []string
	pause atomic.Int64 // unix nanoseconds until which the reader does not read
	done  chan struct{}
}

var stressRooms = []string{"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9"}

func (c *stressClient) run(end time.Time) {
	defer c.disconnect(false)
	for time.Now().Before(end) {
		if c.ws == nil {
			c.connect()
		} else {
			c.act()
		}
		// Pacing of the load, not synchronisation: about four actions a
		// second each. The test is about concurrency, not throughput, and
		// runs under -race on a shared 2-core machine: saturating it would
		// only measure the scheduler's queue.
		time.Sleep(time.Duration(50+c.rng.IntN(400)) * time.Millisecond)
	}
}

func (c *stressClient) connect() {
	q := url.Values{"user": {c.user}}
	if resume := c.peers.Resume(); resume != "" && c.rng.IntN(4) > 0 {
		q.Set("resume", resume)
		c.stats.resumes.Add(1)
	}
	if c.rng.IntN(3) == 0 {
		q.Set("presence", "1")
	}
	d := websocket.Dialer{Subprotocols: proto.Subprotocols, HandshakeTimeout: wait,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	u := "ws" + strings.TrimPrefix(c.front.srv.URL, "http") + "/ws?" + q.Encode()
	ws, _, err := d.Dial(u, nil)
	if err != nil {
		c.stats.refused.Add(1)
		return
	}
	c.stats.dials.Add(1)
	c.ws, c.rooms, c.done = ws, nil, make(chan struct{})
	go c.read(ws, c.done)
}

// read consumes what the hub sends, noting the resume token and peer ids.
func (c *stressClient) read(ws *websocket.Conn, done chan struct{}) {
	defer close(done)
	for {
		if until := c.pause.Load(); until != 0 {
			time.Sleep(time.Until(time.Unix(0, until))) // the behaviour under test: not reading
			c.pause.Store(0)
		}
		_, b, err := ws.ReadMessage()
		if err != nil {
			return
		}
		c.peers.Saw(b)
	}
}

func (c *stressClient) act() {
	var err error
	switch n := c.rng.IntN(100); {
	case n < 35:
		room := ""
		if len(c.rooms) > 0 && c.rng.IntN(2) == 0 {
			room = c.rooms[c.rng.IntN(len(c.rooms))]
		}
		err = c.send(proto.Message{Type: proto.TypeSignal, ID: "s", To: c.peers.Target(c.rng), Room: room,
			Data: json.RawMessage(`{"pad":"` + strings.Repeat("x", c.rng.IntN(4000)) + `"}`)})
		c.stats.signals.Add(1)
	case n < 55:
		room := stressRooms[c.rng.IntN(len(stressRooms))]
		err = c.send(proto.Message{Type: proto.TypeJoin, ID: "j", Room: room})
		c.rooms = append(c.rooms, room)
		c.stats.joins.Add(1)
	case n < 65 && len(c.rooms) > 0:
		i := c.rng.IntN(len(c.rooms))
		err = c.send(proto.Message{Type: proto.TypeLeave, ID: "l", Room: c.rooms[i]})
		c.rooms = append(c.rooms[:i], c.rooms[i+1:]...)
	case n < 72:
		err = c.send(proto.Message{Type: proto.TypePing, ID: "p"})
	case n < 76:
		err = c.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":`)) // garbage
	case n < 80:
		// Stop reading for up to 3 s: the queue fills, and the hub may
		// take this client for a slow consumer.
		c.pause.Store(time.Now().Add(time.Duration(c.rng.IntN(3000)) * time.Millisecond).UnixNano())
		c.stats.pauses.Add(1)
	case n < 85:
		// A burst of signals to one peer, as fast as TCP takes them.
		to := c.peers.Target(c.rng)
		for i := 0; i < 20 && err == nil; i++ {
			err = c.send(proto.Message{Type: proto.TypeSignal, ID: "b", To: to, Data: json.RawMessage(`{"i":1}`)})
		}
	case n < 90:
		c.disconnect(true)
	case n < 93:
		c.disconnect(false)
	}
	if err != nil {
		c.disconnect(true) // the hub dropped us: reconnect (and resume) next time
	}
}

func (c *stressClient) send(m proto.Message) error {
	b, _ := json.Marshal(m)
	_ = c.ws.SetWriteDeadline(time.Now().Add(2 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// disconnect drops the socket abruptly (the session waits for a resume),
// or closes it with 1000 (the session ends).
func (c *stressClient) disconnect(abrupt bool) {
	if c.ws == nil {
		return
	}
	if abrupt {
		c.stats.drops.Add(1)
	} else {
		c.stats.closes.Add(1)
		_ = c.ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		c.peers.Forget()
	}
	_ = c.ws.NetConn().Close()
	c.pause.Store(0)
	<-c.done
	c.ws = nil
}
