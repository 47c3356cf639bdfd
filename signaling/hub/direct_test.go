package hub

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"testing"

	"github.com/khadga/khadga/proto"
)

// A receiver that reads nothing for a while fills its socket: direct writes
// then leave part of a frame to the writer goroutine, and everything must
// still arrive whole and in order once it reads.
func TestDirectWritesSurviveAFullSocket(t *testing.T) {
	ts := newTestServer(t, Config{}, serverMode{start: true})
	alice := ts.dial("user=alice")
	bob := dialIdle(t, ts, "user=bob")
	_ = json.Unmarshal(readUntil(t, bob, proto.TypeWelcome).Data, &bob.welcome)
	bob.send(proto.Message{Type: proto.TypeJoin, ID: "j1", Room: "lobby"})
	readUntil(t, bob, proto.TypeJoined)
	alice.join("lobby", "j2")
	// A small send buffer on bob's side of the server, so that it fills
	// after a few frames (the kernel would otherwise grow it to megabytes).
	for _, c := range ts.hub.conns.collect(nil) {
		if c.peer() == bob.peer() {
			if err := c.sock.Conn.(*net.TCPConn).SetWriteBuffer(16 << 10); err != nil {
				t.Fatal(err)
			}
		}
	}

	const n = 48
	pad := strings.Repeat("x", 8<<10)
	for i := range n {
		alice.signal(bob.peer(), "lobby", fmt.Sprint("s", i), fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, pad))
	}
	// Every signal has reached bob's connection (written or queued) once
	// alice's ping, sent after them on the same connection, is answered.
	alice.ping("p1")
	eventually(t, "a partial direct write", func() bool { return ts.hub.stats.partials.Load() > 0 })

	go bob.read()
	bob.expect(proto.TypePeerJoined)
	for i := range n {
		m := bob.expect(proto.TypeSignal)
		want := fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, pad)
		if m.From != alice.peer() || string(m.Data) != want {
			t.Fatalf("signal %d: from %q, %d bytes of data, starting %.20s", i, m.From, len(m.Data), m.Data)
		}
	}
	if st := ts.hub.Stats(); st.SignalsRelayed != n || st.SlowConsumers != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// readUntil reads c's socket itself (c has no reader goroutine) until a
// message of type typ.
func readUntil(t *testing.T, c *tclient, typ string) *proto.Message {
	t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(wait))
	defer c.ws.SetReadDeadline(time.Time{})
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		var m proto.Message
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m.Type == typ {
			return &m
		}
	}
}

// dialIdle connects a client that does not read until the test starts its
// reader. Unlike dialRaw's non-reading client it keeps the kernel's default
// receive buffer: one smaller than the loopback MSS makes TCP wait for
// zero-window probes, seconds apart, once the client reads again.
func dialIdle(t *testing.T, ts *testServer, query string) *tclient {
	t.Helper()
	d := websocket.Dialer{Subprotocols: proto.Subprotocols, HandshakeTimeout: wait}
	u := "ws" + strings.TrimPrefix(ts.srv.URL, "http") + "/ws?" + query
	ws, _, err := d.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	return &tclient{t: t, ws: ws, msgs: make(chan *proto.Message, 4096), closed: make(chan struct{})}
}
