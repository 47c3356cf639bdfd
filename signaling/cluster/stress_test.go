package cluster

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/internal/stresspeers"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// TestClusterStress runs 90 clients against three nodes for 15 s. Each
// connects to a node picked at random every time, so that most resumes
// move the session to another node (a claim), and joins and leaves rooms,
// signals peers it saw (often on other nodes, often gone), drops its
// socket or closes it, at random. Throughout, no handler may run for 10 s
// (every goroutine's stack is printed if one does) and a probe pair on
// two nodes keeps relaying, each signal within 5 s or refused with an
// error (then sent again: startProbe). Then the clients stop
// and stay: every node must come to see the same number of members in
// every room. Then they close: every session ends on every node, and the
// goroutine count comes back to that of the idle nodes.
func TestClusterStress(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test: not in -short")
	}
	urls := natstest.Start(t).ClientURL()
	hcfg := hub.Config{ResumeWindow: 2 * time.Second, PingPeriod: time.Second, PongWait: 15 * time.Second,
		MaxConnsPerUser: 8}
	nodes := []*testNode{startNode(t, "a", urls, fastConfig(), hcfg), startNode(t, "b", urls, fastConfig(), hcfg),
		startNode(t, "c", urls, fastConfig(), hcfg)}
	baseline := runtime.NumGoroutine() // NATS and the three nodes, idle
	stop := make(chan struct{})
	var stopped sync.WaitGroup
	stopped.Add(1)
	go func() { defer stopped.Done(); clusterWatchdog(nodes, 10*time.Second, stop) }()

	pa, pc := nodes[0].dial("user=probe-a"), nodes[2].dial("user=probe-c")
	pa.join("probe")
	pc.join("probe")
	pa.expectPeerJoined(pc.peer())
	probe := startProbe(pa, pc)

	var stats clusterStressStats
	reg := &stresspeers.Registry{}
	end := time.Now().Add(stressDuration(t))
	clients := make([]*clusterStressClient, 90)
	var wg sync.WaitGroup
	for i := range clients {
		c := &clusterStressClient{nodes: nodes, user: fmt.Sprint("u", i%30), peers: stresspeers.Peers{Reg: reg}, stats: &stats,
			rng: rand.New(rand.NewPCG(uint64(i), 7))}
		clients[i] = c
		wg.Add(1)
		go func() { defer wg.Done(); c.run(end) }()
	}
	wg.Wait()
	worst := probe.finish()
	t.Logf("probe: slowest signal %v, %d refused and sent again", worst, probe.refused)
	if worst > 5*time.Second {
		t.Errorf("a probe signal between nodes a and c took %v; want every one within 5 s", worst)
		t.Logf("probe: %s", probe.lost)
	}
	t.Logf("cluster stress: %s", stats.String())
	for _, tn := range nodes {
		t.Logf("node %s: %+v", tn.name, tn.hub.Stats())
	}

	// Quiet, every client still connected (those that dropped their
	// socket last are ended after the resume window): the nodes agree on
	// every room.
	converged := func() bool {
		for _, room := range clusterStressRooms {
			n := nodes[0].hub.RoomMembers(room)
			for _, tn := range nodes[1:] {
				if tn.hub.RoomMembers(room) != n {
					return false
				}
			}
		}
		return true
	}
	deadline := time.Now().Add(wait)
	for !converged() {
		if time.Now().After(deadline) {
			for _, tn := range nodes {
				t.Logf("node %s: %s", tn.name, roomView(tn))
			}
			t.Fatal("the nodes do not see the same members in every room")
		}
		time.Sleep(10 * time.Millisecond) // polling the nodes' views, not synchronising
	}

	for _, c := range clients {
		c.disconnect(false)
	}
	pa.ws.Close()
	pc.ws.Close()
	eventually(t, "every session to end on every node", func() bool {
		for _, tn := range nodes {
			if st := tn.hub.Stats(); st.Sessions != 0 || st.Remote != 0 || st.Rooms != 0 {
				return false
			}
		}
		return true
	})
	close(stop)
	stopped.Wait()
	eventually(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseline+2 })
}

// roomView is what tn's hub and directory say of each room: the hub's
// count, and the sessions the directory has in it (node:peer, "!" for an
// entry of an ended session).
func roomView(tn *testNode) string {
	var b strings.Builder
	tn.node.dir.imu.Lock()
	defer tn.node.dir.imu.Unlock()
	for _, room := range clusterStressRooms {
		fmt.Fprintf(&b, "%s=%d[", room, tn.hub.RoomMembers(room))
		for peer, e := range tn.node.dir.byPeer {
			if slices.Contains(e.st.Rooms, room) {
				mark := ""
				if e.gone {
					mark = "!"
				}
				fmt.Fprintf(&b, " %s%s:%s", mark, e.st.Node, peer)
			}
		}
		b.WriteString(" ] ")
	}
	return b.String()
}

// stressDuration is 15 s, or CLUSTER_STRESS_DURATION for a longer soak.
func stressDuration(t *testing.T) time.Duration {
	if v := os.Getenv("CLUSTER_STRESS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CLUSTER_STRESS_DURATION: %v", err)
		}
		return d
	}
	return 15 * time.Second
}

// clusterWatchdog ends the test binary, with every goroutine's stack, if
// a handler on any node runs for longer than limit. A handler only queues
// and never waits on another client or node; limit is far above what the
// machine's load can cause.
func clusterWatchdog(nodes []*testNode, limit time.Duration, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		for _, tn := range nodes {
			if stuck := tn.hub.Stuck(time.Now().Add(-limit)); len(stuck) > 0 {
				buf := make([]byte, 8<<20)
				fmt.Fprintf(os.Stderr, "watchdog: node %s: handlers of %v running for over %v\n\n%s\n",
					tn.name, stuck, limit, buf[:runtime.Stack(buf, true)])
				panic("watchdog: a handler is stuck")
			}
		}
	}
}

// probe keeps two clients on different nodes signalling each other, one
// signal at a time, and records the slowest. A signal refused with an
// error (the sender's node took the other node for gone a moment, which a
// busy machine under -race causes: the design allows that, the sender
// hears) is sent again, as a client would, and counted; the time of a
// signal runs from its last sending. Only a signal that neither arrives
// nor is refused within wait (lost silently) or a failed write ends the
// probe, with worst = time.Hour.
type probe struct {
	stop    chan struct{}
	done    chan struct{}
	worst   time.Duration
	refused int
	lost    string // what went wrong, for the log
}

func startProbe(a, b *client) *probe {
	p := &probe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		from, to := a, b
		for n := 1; ; n++ {
			var sent time.Time
			for {
				select {
				case <-p.stop:
					return
				case <-time.After(20 * time.Millisecond): // the probe's pace
				}
				sent = time.Now()
				id := fmt.Sprint("probe-", n)
				b, _ := json.Marshal(proto.Message{Type: proto.TypeSignal, ID: id, To: to.peer(), Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))})
				if err := from.ws.WriteMessage(websocket.TextMessage, b); err != nil {
					p.worst, p.lost = time.Hour, fmt.Sprintf("%s: write: %v", id, err)
					return
				}
				arrived, refused := awaitProbe(from, to, id, n, wait)
				if arrived {
					break
				}
				if refused == "" {
					p.worst, p.lost = time.Hour, fmt.Sprintf("%s from %s to %s: neither delivered nor refused", id, from.peer(), to.peer())
					return
				}
				p.refused++
				p.lost = fmt.Sprintf("%s refused: %s", id, refused)
			}
			p.worst = max(p.worst, time.Since(sent))
			from, to = to, from
		}
	}()
	return p
}

// awaitProbe waits for probe signal n from from on to, or an error naming
// it (id) on from, skipping anything else (an older probe signal that was
// refused and delivered all the same, say: a node taken for gone has its
// signals in flight reported lost, and may deliver them). It returns
// whether the signal arrived, or else the error's text, "" if neither
// came within within.
func awaitProbe(from, to *client, id string, n int, within time.Duration) (arrived bool, refused string) {
	deadline := time.After(within)
	for {
		select {
		case m := <-to.msgs:
			var d struct{ N int }
			if m.Type == proto.TypeSignal && m.From == from.peer() && json.Unmarshal(m.Data, &d) == nil && d.N == n {
				return true, ""
			}
		case m := <-from.msgs:
			if m.Type == proto.TypeError && m.Ref == id {
				return false, string(m.Data)
			}
		case <-deadline:
			return false, ""
		}
	}
}

// finish stops the probe and returns the slowest signal.
func (p *probe) finish() time.Duration {
	close(p.stop)
	<-p.done
	return p.worst
}

type clusterStressStats struct {
	dials, refused, resumes, moves, signals, joins, drops, closes atomic.Int64
}

func (s *clusterStressStats) String() string {
	return fmt.Sprintf("%d dials (%d refused), %d resumes (%d to another node), %d signals, %d joins, %d drops, %d closes",
		s.dials.Load(), s.refused.Load(), s.resumes.Load(), s.moves.Load(), s.signals.Load(), s.joins.Load(),
		s.drops.Load(), s.closes.Load())
}

var clusterStressRooms = []string{"r0", "r1", "r2", "r3", "r4", "r5"}

// clusterStressClient is one client of TestClusterStress. Only its own
// goroutine (run) touches ws, rooms and at; its reader tells peers what
// the node sends.
type clusterStressClient struct {
	nodes []*testNode
	user  string
	peers stresspeers.Peers // the resume token and peers the reader saw
	stats *clusterStressStats
	rng   *rand.Rand

	ws    *websocket.Conn
	done  chan struct{}
	at    int // the node ws is on, or was last on
	rooms []string
}

func (c *clusterStressClient) run(end time.Time) {
	defer c.disconnect(false)
	for time.Now().Before(end) {
		if c.ws == nil {
			c.connect()
		} else {
			c.act()
		}
		// Pacing of the load, not synchronisation: a few actions a second
		// each, on a shared 2-core machine under -race.
		time.Sleep(time.Duration(50+c.rng.IntN(400)) * time.Millisecond)
	}
}

func (c *clusterStressClient) connect() {
	last := c.at // the node of the last welcome, and of its resume token
	c.at = c.rng.IntN(len(c.nodes))
	q := url.Values{"user": {c.user}, "presence": {"1"}}
	if resume := c.peers.Resume(); resume != "" {
		q.Set("resume", resume)
		c.stats.resumes.Add(1)
		if last != c.at {
			c.stats.moves.Add(1)
		}
	}
	d := websocket.Dialer{Subprotocols: proto.Subprotocols, HandshakeTimeout: wait}
	u := "ws" + strings.TrimPrefix(c.nodes[c.at].srv.URL, "http") + "/ws?" + q.Encode()
	ws, _, err := d.Dial(u, nil)
	if err != nil {
		c.stats.refused.Add(1)
		return
	}
	c.stats.dials.Add(1)
	c.ws, c.rooms, c.done = ws, nil, make(chan struct{})
	go c.read(ws, c.done)
}

// read hands what the node sends to peers.
func (c *clusterStressClient) read(ws *websocket.Conn, done chan struct{}) {
	defer close(done)
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			return
		}
		c.peers.Saw(b)
	}
}

func (c *clusterStressClient) act() {
	var err error
	switch n := c.rng.IntN(100); {
	case n < 40:
		err = c.send(proto.Message{Type: proto.TypeSignal, ID: "s", To: c.peers.Target(c.rng),
			Data: json.RawMessage(`{"pad":"` + strings.Repeat("x", c.rng.IntN(2000)) + `"}`)})
		c.stats.signals.Add(1)
	case n < 60:
		room := clusterStressRooms[c.rng.IntN(len(clusterStressRooms))]
		err = c.send(proto.Message{Type: proto.TypeJoin, ID: "j", Room: room})
		c.rooms = append(c.rooms, room)
		c.stats.joins.Add(1)
	case n < 72 && len(c.rooms) > 0:
		i := c.rng.IntN(len(c.rooms))
		err = c.send(proto.Message{Type: proto.TypeLeave, ID: "l", Room: c.rooms[i]})
		c.rooms = append(c.rooms[:i], c.rooms[i+1:]...)
	case n < 88:
		c.disconnect(true) // resumes next time, most likely on another node
	case n < 92:
		c.disconnect(false)
	}
	if err != nil {
		c.disconnect(true)
	}
}

func (c *clusterStressClient) send(m proto.Message) error {
	b, _ := json.Marshal(m)
	_ = c.ws.SetWriteDeadline(time.Now().Add(2 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// disconnect drops the socket abruptly (the session waits for a resume)
// or closes it with 1000 (the session ends).
func (c *clusterStressClient) disconnect(abrupt bool) {
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
	<-c.done
	c.ws = nil
}
