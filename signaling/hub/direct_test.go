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

// maskedFrame builds a client frame with a non-zero masking key; fin false
// makes a fragment.
func maskedFrame(op byte, fin bool, payload []byte) []byte {
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b := []byte{op}
	if fin {
		b[0] |= 0x80
	}
	if n := len(payload); n < 126 {
		b = append(b, 0x80|byte(n))
	} else {
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// The reader handles whole text frames itself and leaves everything else
// to gorilla: each of these arrives as the same signal.
func TestReaderFramePaths(t *testing.T) {
	ts := newTestServer(t, Config{}, serverMode{start: true})
	alice := ts.dial("user=alice")
	bob := ts.dial("user=bob")
	alice.join("lobby", "j1")
	bob.join("lobby", "j2")
	alice.expect(proto.TypePeerJoined)
	sig := func(i int) []byte {
		return fmt.Appendf(nil, `{"type":"signal","to":"%s","data":{"i":%d,"pad":"%s"}}`, alice.peer(), i, strings.Repeat("z", 200+i))
	}
	raw := bob.ws.UnderlyingConn()
	write := func(parts ...[]byte) {
		t.Helper()
		for _, p := range parts {
			if _, err := raw.Write(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	expect := func(i int) {
		t.Helper()
		m := alice.expect(proto.TypeSignal)
		if want := fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("z", 200+i)); string(m.Data) != want {
			t.Fatalf("signal %d: data %.40s…, want %.40s…", i, m.Data, want)
		}
	}
	// 0: one frame, one write.
	write(maskedFrame(1, true, sig(0)))
	// 1: a frame in two writes, split inside its header.
	f1 := maskedFrame(1, true, sig(1))
	write(f1[:3])
	write(f1[3:])
	// 2, 3: two frames in one write.
	write(append(maskedFrame(1, true, sig(2)), maskedFrame(1, true, sig(3))...))
	// 4: a fragmented message with a ping between its fragments.
	s4 := sig(4)
	write(maskedFrame(1, false, s4[:50]), maskedFrame(9, true, []byte("hi")), maskedFrame(0, true, s4[50:]))
	// 5, 6: a whole frame and the start of the next in one write; once 5
	// has arrived, the server holds part of 6, and the rest follows.
	f6 := maskedFrame(1, true, sig(6))
	write(append(maskedFrame(1, true, sig(5)), f6[:40]...))
	for i := range 6 {
		expect(i)
	}
	write(f6[40:])
	expect(6)
	// A frame with a reserved bit set is a protocol error gorilla closes on.
	write([]byte{0xc1, 0x80, 0, 0, 0, 0})
	eventually(t, "bob's connection closed", func() bool { return ts.hub.Stats().Connections == 1 })
}

func TestUnmask(t *testing.T) {
	key := []byte{0x37, 0xfa, 0x21, 0x3d}
	for n := range 41 {
		b := make([]byte, n)
		want := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 7)
			want[i] = b[i] ^ key[i%4]
		}
		unmask(key, b)
		if string(b) != string(want) {
			t.Fatalf("length %d: % x, want % x", n, b, want)
		}
	}
}
