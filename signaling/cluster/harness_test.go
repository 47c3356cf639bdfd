package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/internal/testlog"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// wait bounds every expectation.
const wait = 30 * time.Second

// fastConfig makes failures show within a test's patience: a node is
// gone after 600 ms without a heartbeat, and its sessions wait 1 s more.
func fastConfig() Config {
	return Config{Heartbeat: 200 * time.Millisecond, DeadAfter: 600 * time.Millisecond,
		OrphanGrace: time.Second, AckWait: 2 * time.Second, ClaimTimeout: time.Second}
}

// testNode is one khadga node: a hub with a cluster Node, behind a tiny
// HTTP handler that takes the identity from the query (as the hub's own
// tests do; package signaling does the real authentication).
type testNode struct {
	t    *testing.T
	name string
	hub  *hub.Hub
	node *Node
	nc   *nats.Conn
	srv  *httptest.Server
	down bool
}

func startNode(t *testing.T, name, urls string, cfg Config, hcfg hub.Config) *testNode {
	t.Helper()
	return startNodeOn(t, name, natstest.Connect(t, urls), cfg, hcfg)
}

// startNodeOn is startNode on a given connection (one through a proxy
// that can cut it, say).
func startNodeOn(t *testing.T, name string, nc *nats.Conn, cfg Config, hcfg hub.Config) *testNode {
	t.Helper()
	log := testlog.New(t, slog.LevelInfo).With("node", name)
	cfg.NodeID = name
	if cfg.Logger == nil {
		cfg.Logger = log
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	node, err := New(ctx, cfg, nc)
	if err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	hcfg.Logger, hcfg.Delivery = log, node
	h, err := hub.New(hcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(ctx, h); err != nil {
		t.Fatal(err)
	}
	tn := &testNode{t: t, name: name, hub: h, node: node, nc: nc}
	up := websocket.Upgrader{Subprotocols: proto.Subprotocols, CheckOrigin: func(*http.Request) bool { return true }}
	tn.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		q := r.URL.Query()
		id := hub.Identity{User: q.Get("user"), Role: proto.RoleUser, Login: q.Get("login")}
		if ns, err := strconv.ParseInt(q.Get("checked"), 10, 64); err == nil {
			id.Checked = time.Unix(0, ns)
		}
		_ = h.Accept(ws.NetConn(), id, hub.ConnOptions{ResumeToken: q.Get("resume"), Presence: q.Get("presence") == "1"})
	}))
	t.Cleanup(tn.stop)
	return tn
}

// stop shuts the node down as a clean exit without drain would.
func (tn *testNode) stop() {
	if tn.down {
		return
	}
	tn.down = true
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_ = tn.hub.Shutdown(ctx)
	tn.node.Close()
	tn.srv.Close()
}

// kill stops the node as a crash would: no goodbye, no drain, its sockets
// and its NATS connection cut.
func (tn *testNode) kill() {
	tn.down = true
	tn.nc.Close()
	tn.node.Close()
	tn.srv.CloseClientConnections()
	tn.srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_ = tn.hub.Shutdown(ctx)
}

// client is a test WebSocket client, reading every message into msgs and
// keeping its presence view as a client app does.
type client struct {
	t       *testing.T
	ws      *websocket.Conn
	msgs    chan *proto.Message
	closed  chan struct{}
	err     error
	welcome proto.Welcome

	pmu    sync.Mutex
	online map[string]bool
}

// sees reports whether the client's presence view has peer online.
func (c *client) sees(peer string) bool {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	return c.online[peer]
}

func (c *client) applyPresence(m *proto.Message) {
	var p proto.Presence
	if json.Unmarshal(m.Data, &p) != nil {
		return
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if p.Kind == proto.PresenceFull || c.online == nil {
		c.online = map[string]bool{}
	}
	for _, mem := range p.Peers {
		c.online[mem.Peer] = p.Kind != proto.PresenceOffline
	}
}

func (tn *testNode) dial(query string) *client {
	tn.t.Helper()
	ws := tn.dialWS(query)
	c := &client{t: tn.t, ws: ws, msgs: make(chan *proto.Message, 4096), closed: make(chan struct{})}
	tn.t.Cleanup(func() { _ = ws.Close() })
	go c.read()
	m := c.expect(proto.TypeWelcome)
	if err := json.Unmarshal(m.Data, &c.welcome); err != nil {
		tn.t.Fatal(err)
	}
	return c
}

// dialWS opens a WebSocket to tn, with query for its identity and options.
func (tn *testNode) dialWS(query string) *websocket.Conn {
	tn.t.Helper()
	u := "ws" + strings.TrimPrefix(tn.srv.URL, "http") + "/ws?" + query
	d := websocket.Dialer{Subprotocols: proto.Subprotocols, HandshakeTimeout: wait}
	ws, _, err := d.Dial(u, nil)
	if err != nil {
		tn.t.Fatalf("dial %s: %v", tn.name, err)
	}
	return ws
}

func (c *client) read() {
	defer close(c.closed)
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			c.err = err
			return
		}
		var m proto.Message
		if json.Unmarshal(b, &m) == nil {
			if m.Type == proto.TypePresence {
				c.applyPresence(&m)
			}
			c.msgs <- &m
		}
	}
}

func (c *client) peer() string { return c.welcome.Peer }

func (c *client) send(m proto.Message) {
	c.t.Helper()
	b, _ := json.Marshal(m)
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// next returns the next message of any type.
func (c *client) next() *proto.Message {
	c.t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-c.closed:
		select {
		case m := <-c.msgs:
			return m
		default:
		}
		c.t.Fatalf("connection closed while waiting: %v", c.err)
	case <-time.After(wait):
		c.t.Fatalf("no message within %v", wait)
	}
	return nil
}

// expect returns the next message of type typ, skipping presence.
func (c *client) expect(typ string) *proto.Message {
	c.t.Helper()
	for {
		m := c.next()
		if m.Type == proto.TypePresence && typ != proto.TypePresence {
			continue
		}
		if m.Type != typ {
			c.t.Fatalf("got %s %s (ref %q), want %s", m.Type, m.Data, m.Ref, typ)
		}
		return m
	}
}

// await skips messages until one of type typ that match accepts.
func (c *client) await(typ string, match func(*proto.Message) bool) *proto.Message {
	c.t.Helper()
	for {
		m := c.next()
		if m.Type == typ && (match == nil || match(m)) {
			return m
		}
	}
}

func (c *client) join(room string) []proto.Member {
	c.t.Helper()
	c.send(proto.Message{Type: proto.TypeJoin, ID: "join-" + room, Room: room})
	m := c.await(proto.TypeJoined, func(m *proto.Message) bool { return m.Ref == "join-"+room })
	var j proto.Joined
	_ = json.Unmarshal(m.Data, &j)
	return j.Peers
}

func (c *client) signal(to, id, data string) {
	c.send(proto.Message{Type: proto.TypeSignal, ID: id, To: to, Data: json.RawMessage(data)})
}

// expectSignal waits for a signal from peer, past events and presence.
func (c *client) expectSignal(from string) *proto.Message {
	c.t.Helper()
	return c.await(proto.TypeSignal, func(m *proto.Message) bool { return m.From == from })
}

// expectPeerJoined waits for peer-joined naming peer.
func (c *client) expectPeerJoined(peer string) {
	c.t.Helper()
	c.await(proto.TypePeerJoined, func(m *proto.Message) bool {
		var mem proto.Member
		return json.Unmarshal(m.Data, &mem) == nil && mem.Peer == peer
	})
}

// eventually polls cond until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling observable state, not synchronising
	}
}

// listen subscribes a connection of its own to subject, and returns once
// NATS has the subscription.
func listen(t *testing.T, urls, subject string) *nats.Subscription {
	t.Helper()
	obs := natstest.Connect(t, urls)
	sub, err := obs.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := obs.Flush(); err != nil {
		t.Fatal(err)
	}
	return sub
}

// trackHeld has tn track a signal from -> to sent to node, which said it
// holds it for an absent session, and returns its sequence number.
func trackHeld(tn *testNode, from, ref, to, node string) uint64 {
	seq := tn.node.track.add(from, ref, to, node)
	tn.node.track.settle(ack{seq: seq, status: ackHeld})
	return seq
}

// inLobby dials alice at an and bob at bn; both join lobby, and it
// returns once alice has seen bob join.
func inLobby(an, bn *testNode) (alice, bob *client) {
	alice, bob = an.dial("user=alice"), bn.dial("user=bob")
	alice.join("lobby")
	// Both nodes must know both members: bob's node may hear of alice's
	// join after bob's own, and until then it refuses bob's signals to
	// her as between peers who share no room.
	if !slices.ContainsFunc(bob.join("lobby"), func(m proto.Member) bool { return m.Peer == alice.peer() }) {
		bob.expectPeerJoined(alice.peer())
	}
	alice.expectPeerJoined(bob.peer())
	return alice, bob
}

// dirNode is the node that tn's directory says holds peer ("" if it has
// no entry for it).
func (tn *testNode) dirNode(peer string) string {
	tn.node.dir.imu.Lock()
	defer tn.node.dir.imu.Unlock()
	if e := tn.node.dir.byPeer[peer]; e != nil {
		return e.st.Node
	}
	return ""
}

func dropSocket(c *client) {
	_ = c.ws.NetConn().Close()
	<-c.closed
}

// startNodeBehindProxy starts a node whose NATS connection goes through a
// proxy that the test can cut (and bring up again), connected as khadga
// serve connects: no buffering while disconnected.
func startNodeBehindProxy(t *testing.T, name, urls string, cfg Config, hcfg hub.Config) (*testNode, *natstest.Proxy, *nats.Conn) {
	t.Helper()
	p := natstest.NewProxy(t, urls)
	nc, err := nats.Connect(p.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return startNodeOn(t, name, nc, cfg, hcfg), p, nc
}

// drainAsync stops tn's hub (Shutdown, which tells its clients to
// reconnect) and drains its node until drain ends, on a goroutine of its
// own; the channel closes when both are done.
func drainAsync(tn *testNode, drain context.Context) <-chan struct{} {
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = tn.hub.Shutdown(ctx)
		tn.node.Drain(drain)
	}()
	return drained
}

// bobAwayOnA starts nodes a and b, alice and bob in lobby on a, and bob's
// socket dropped (his session waits on a for a resume) once b knows it.
func bobAwayOnA(t *testing.T) (a, b *testNode, alice, bob *client) {
	t.Helper()
	urls := natstest.Start(t).ClientURL()
	a = startNode(t, "a", urls, fastConfig(), hub.Config{ResumeWindow: time.Minute})
	b = startNode(t, "b", urls, fastConfig(), hub.Config{})
	alice, bob = inLobby(a, a)
	dropSocket(bob)
	eventually(t, "a to see bob's socket drop", func() bool { return a.hub.Stats().Connections == 1 })
	eventually(t, "b to know bob's session", func() bool { return b.hub.Stats().Remote == 2 })
	return a, b, alice, bob
}
