package hub

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/proto"
)

// wait is the generous timeout of every expectation: CI machines are slow,
// and a machine shared with other work can stall a -race binary for seconds.
const wait = 30 * time.Second

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testServer is a hub behind a tiny HTTP handler that upgrades with
// gorilla and hands the raw connection to Accept, with the identity given
// in the query string.
type testServer struct {
	t   testing.TB
	hub *Hub
	srv *httptest.Server
	tls bool
}

// serverMode says how clients reach the hub: ws:// (plain TCP) or wss://
// (TLS in process). The same hub code serves both.
type serverMode struct {
	tls bool
}

func (m serverMode) String() string {
	if m.tls {
		return "wss"
	}
	return "ws"
}

func newTestServer(t testing.TB, cfg Config, mode ...serverMode) *testServer {
	t.Helper()
	var md serverMode
	if len(mode) > 0 {
		md = mode[0]
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := &testServer{t: t, hub: h, tls: md.tls}
	handler := ts.handler()
	if md.tls {
		ts.srv = httptest.NewTLSServer(handler)
	} else {
		ts.srv = httptest.NewServer(handler)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		ts.srv.Close()
	})
	return ts
}

// also returns a second front for the same hub, over the other scheme.
func (ts *testServer) also(tlsOn bool) *testServer {
	o := &testServer{t: ts.t, hub: ts.hub, tls: tlsOn}
	if tlsOn {
		o.srv = httptest.NewTLSServer(ts.handler())
	} else {
		o.srv = httptest.NewServer(ts.handler())
	}
	ts.t.Cleanup(o.srv.Close)
	return o
}

// handler upgrades with gorilla and hands the raw connection to Accept.
func (ts *testServer) handler() http.Handler {
	h := ts.hub
	up := websocket.Upgrader{Subprotocols: proto.Subprotocols, CheckOrigin: func(*http.Request) bool { return true }}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		q := r.URL.Query()
		if q.Get("sndbuf") != "" {
			// A small server-side send buffer, so that a client that never
			// reads fills its queue after kilobytes, not megabytes.
			nc := ws.NetConn()
			if tc, ok := nc.(*tls.Conn); ok {
				nc = tc.NetConn()
			}
			_ = nc.(*net.TCPConn).SetWriteBuffer(4096)
		}
		id := Identity{User: q.Get("user"), Role: q.Get("role"), Login: q.Get("login")}
		if ns, err := strconv.ParseInt(q.Get("checked"), 10, 64); err == nil {
			id.Checked = time.Unix(0, ns)
		}
		if id.Role == "" {
			id.Role = proto.RoleUser
		}
		if g := q.Get("rooms"); g != "" {
			id.Rooms = strings.Split(g, ",")
		}
		opts := ConnOptions{ResumeToken: q.Get("resume"), Presence: q.Get("presence") == "1"}
		_ = h.Accept(ws.NetConn(), id, opts)
	})
}

// tclient is a test WebSocket client. A goroutine reads every message into
// msgs; the test reads them with next and expect.
type tclient struct {
	t        testing.TB
	ws       *websocket.Conn
	msgs     chan *proto.Message
	closed   chan struct{}
	closeErr error
	welcome  proto.Welcome
}

// dial connects with the query (user=..., rooms=..., resume=..., presence=1)
// and reads welcome.
func (ts *testServer) dial(query string) *tclient {
	ts.t.Helper()
	c := ts.dialRaw(query, false)
	m := c.expect(proto.TypeWelcome)
	if err := json.Unmarshal(m.Data, &c.welcome); err != nil {
		ts.t.Fatalf("welcome data: %v", err)
	}
	return c
}

// dialRaw connects; with noRead it starts no reader, for a client that
// never reads.
func (ts *testServer) dialRaw(query string, noRead bool) *tclient {
	ts.t.Helper()
	d := websocket.Dialer{Subprotocols: proto.Subprotocols, HandshakeTimeout: wait,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	if noRead {
		// A small receive buffer, set before the connection is made: set
		// after, it leaves the window already offered (64 KiB and more)
		// open, and a client that never reads still takes that much.
		d.NetDialContext = (&net.Dialer{Control: smallReceiveBuffer}).DialContext
	}
	u := "ws" + strings.TrimPrefix(ts.srv.URL, "http") + "/ws?" + query
	ws, _, err := d.Dial(u, nil)
	if err != nil {
		ts.t.Fatalf("dial: %v", err)
	}
	c := &tclient{t: ts.t, ws: ws, msgs: make(chan *proto.Message, 4096), closed: make(chan struct{})}
	// gorilla's default answer to a ping gives its pong one second: a
	// process starved of CPU by a loaded machine misses that, and the
	// client's reader then fails. Give it the test's patience.
	ws.SetPingHandler(func(data string) error {
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(wait))
		if err == websocket.ErrCloseSent {
			return nil
		}
		return err
	})
	ts.t.Cleanup(func() { _ = ws.Close() })
	if !noRead {
		go c.read()
	}
	return c
}

func (c *tclient) read() {
	defer close(c.closed)
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			c.closeErr = err
			return
		}
		var m proto.Message
		if err := json.Unmarshal(b, &m); err != nil {
			c.closeErr = err
			return
		}
		c.msgs <- &m
	}
}

// next returns the next message, presence included.
func (c *tclient) next() *proto.Message {
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
		c.t.Fatalf("connection closed while waiting for a message: %v", c.closeErr)
	case <-time.After(wait):
		c.t.Fatalf("no message within %v", wait)
	}
	return nil
}

// expect returns the next message that is not presence (unless typ is
// presence) and fails unless it has type typ.
func (c *tclient) expect(typ string) *proto.Message {
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

// expectError waits for an error and checks its code and ref.
func (c *tclient) expectError(code proto.Code, ref string) proto.Error {
	c.t.Helper()
	m := c.expect(proto.TypeError)
	var e proto.Error
	if err := json.Unmarshal(m.Data, &e); err != nil {
		c.t.Fatalf("error data: %v", err)
	}
	if e.Code != code || m.Ref != ref {
		c.t.Fatalf("got error %s (ref %q): %s; want %s (ref %q)", e.Code, m.Ref, e.Message, code, ref)
	}
	return e
}

// expectClose waits for the connection to close and returns the close code.
func (c *tclient) expectClose() int {
	c.t.Helper()
	select {
	case <-c.closed:
	case <-time.After(wait):
		c.t.Fatalf("connection not closed within %v", wait)
	}
	if ce, ok := c.closeErr.(*websocket.CloseError); ok {
		return ce.Code
	}
	return -1
}

func (c *tclient) sendRaw(s string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *tclient) send(m proto.Message) {
	c.t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(string(b))
}

func (c *tclient) join(room, id string) []proto.Member {
	c.t.Helper()
	c.send(proto.Message{Type: proto.TypeJoin, ID: id, Room: room})
	m := c.expect(proto.TypeJoined)
	if m.Ref != id || m.Room != room {
		c.t.Fatalf("joined ref %q room %q, want %q %q", m.Ref, m.Room, id, room)
	}
	var j proto.Joined
	if err := json.Unmarshal(m.Data, &j); err != nil {
		c.t.Fatal(err)
	}
	return j.Peers
}

func (c *tclient) signal(to, room, id, data string) {
	c.t.Helper()
	c.send(proto.Message{Type: proto.TypeSignal, ID: id, To: to, Room: room, Data: json.RawMessage(data)})
}

// ping checks that the connection works: every message queued for this
// client before the pong arrives first.
func (c *tclient) ping(id string) {
	c.t.Helper()
	c.send(proto.Message{Type: proto.TypePing, ID: id})
	if m := c.expect(proto.TypePong); m.Ref != id {
		c.t.Fatalf("pong ref %q, want %q", m.Ref, id)
	}
}

func (c *tclient) peer() string { return c.welcome.Peer }

// eventually polls cond (a state check, not a sleep-as-sync) until it
// holds or the timeout passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
		time.Sleep(5 * time.Millisecond)
	}
}

func decodeMember(t testing.TB, m *proto.Message) proto.Member {
	t.Helper()
	var mem proto.Member
	if err := json.Unmarshal(m.Data, &mem); err != nil {
		t.Fatal(err)
	}
	return mem
}

// forModes runs a test over ws:// and over wss://.
func forModes(t *testing.T, test func(*testing.T, serverMode)) {
	for _, md := range []serverMode{{}, {tls: true}} {
		t.Run(md.String(), func(t *testing.T) { test(t, md) })
	}
}
