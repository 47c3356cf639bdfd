package wsconn

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// wait bounds every expectation: CI machines are slow.
const wait = 10 * time.Second

// msg is the test's queued message.
type msg []byte

func (m msg) Payload() []byte { return m }
func (m msg) Release()        {}

// mode is one way a connection reaches the reader: the three paths the
// package has.
type mode struct {
	name     string
	tls      bool
	portable bool
}

var modes = []mode{
	{name: "ws-raw"},
	{name: "ws-portable", portable: true},
	{name: "wss", tls: true},
}

func forModes(t *testing.T, test func(t *testing.T, md mode)) {
	for _, md := range modes {
		t.Run(md.name, func(t *testing.T) { test(t, md) })
	}
}

// handler is a Handler that runs the test's function for each message and
// records what arrived.
type handler struct {
	c        *Conn[msg]
	onMsg    func(c *Conn[msg], text bool, b []byte)
	msgs     chan string // "text:..." or "binary:..."
	tooLarge chan int64
}

func (h *handler) Message(text bool, b []byte) {
	kind := "binary:"
	if text {
		kind = "text:"
	}
	select {
	case h.msgs <- kind + string(b):
	default:
	}
	if h.onMsg != nil {
		h.onMsg(h.c, text, b)
	}
}

func (h *handler) TooLarge(size int64) {
	select {
	case h.tooLarge <- size:
	default:
	}
}

// server upgrades each request with gorilla, then serves the raw connection
// with a Conn on the handler's goroutine.
type server struct {
	t       testing.TB
	srv     *httptest.Server
	cfg     Config
	onMsg   func(c *Conn[msg], text bool, b []byte)
	conns   chan *handler
	results chan Result[msg]
}

// echo answers every message with the same text.
func echo(c *Conn[msg], _ bool, b []byte) { _ = c.Send(msg(append([]byte(nil), b...))) }

func newServer(t testing.TB, md mode, cfg Config, onMsg func(*Conn[msg], bool, []byte)) *server {
	t.Helper()
	cfg = cfg.WithDefaults()
	cfg.portable = md.portable
	s := &server{t: t, cfg: cfg, onMsg: onMsg, conns: make(chan *handler, 16), results: make(chan Result[msg], 16)}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		hd := &handler{onMsg: s.onMsg, msgs: make(chan string, 1024), tooLarge: make(chan int64, 1)}
		hd.c = New[msg](ws.NetConn(), &s.cfg)
		s.conns <- hd
		s.results <- hd.c.Serve(hd)
	})
	if md.tls {
		s.srv = httptest.NewTLSServer(h)
	} else {
		s.srv = httptest.NewServer(h)
	}
	t.Cleanup(s.srv.Close)
	return s
}

// dial opens a gorilla client and returns it with the server side's handler.
func (s *server) dial() (*websocket.Conn, *handler) {
	s.t.Helper()
	d := websocket.Dialer{HandshakeTimeout: wait, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	u := "ws" + strings.TrimPrefix(s.srv.URL, "http")
	ws, _, err := d.Dial(u, nil)
	if err != nil {
		s.t.Fatalf("dial: %v", err)
	}
	s.t.Cleanup(func() { _ = ws.Close() })
	select {
	case h := <-s.conns:
		return ws, h
	case <-time.After(wait):
		s.t.Fatal("server never saw the connection")
		return nil, nil
	}
}

// dialRaw opens a TCP (or TLS) connection and does the handshake by hand,
// for tests that write frames gorilla's client would never write.
func (s *server) dialRaw(md mode) (net.Conn, *handler) {
	s.t.Helper()
	addr := s.srv.Listener.Addr().String()
	var nc net.Conn
	var err error
	if md.tls {
		nc, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		nc, err = net.Dial("tcp", addr)
	}
	if err != nil {
		s.t.Fatalf("dial: %v", err)
	}
	s.t.Cleanup(func() { _ = nc.Close() })
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		s.t.Fatal(err)
	}
	// Read the 101 response up to its blank line, byte by byte, so that no
	// frame after it is consumed.
	var head []byte
	one := make([]byte, 1)
	_ = nc.SetReadDeadline(time.Now().Add(wait))
	for !strings.HasSuffix(string(head), "\r\n\r\n") {
		if _, err := nc.Read(one); err != nil {
			s.t.Fatalf("handshake: %v (%q)", err, head)
		}
		head = append(head, one[0])
	}
	_ = nc.SetReadDeadline(time.Time{})
	if !strings.HasPrefix(string(head), "HTTP/1.1 101") {
		s.t.Fatalf("handshake answered %q", head)
	}
	select {
	case h := <-s.conns:
		return nc, h
	case <-time.After(wait):
		s.t.Fatal("server never saw the connection")
		return nil, nil
	}
}

func (s *server) result() Result[msg] {
	s.t.Helper()
	select {
	case r := <-s.results:
		return r
	case <-time.After(wait):
		buf := make([]byte, 1<<20)
		s.t.Fatalf("Serve did not return\n%s", buf[:runtime.Stack(buf, true)])
		return Result[msg]{}
	}
}

// clientFrame builds a masked client frame.
func clientFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	key := [4]byte{1, 2, 3, 4}
	var b []byte
	n := len(payload)
	switch {
	case n <= 125:
		b = append(b, b0, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, b0, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, b0, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	b = append(b, key[:]...)
	p := append([]byte(nil), payload...)
	mask(key, p)
	return append(b, p...)
}

func expectMsg(t testing.TB, h *handler, want string) {
	t.Helper()
	select {
	case got := <-h.msgs:
		if got != want {
			t.Fatalf("server got %.60q, want %.60q", got, want)
		}
	case <-time.After(wait):
		t.Fatalf("server never got %.60q", want)
	}
}

// closeCodeOf reads from ws until its close frame and returns the code.
func closeCodeOf(t testing.TB, ws *websocket.Conn) int {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(wait))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				return ce.Code
			}
			t.Fatalf("read: %v, want a close frame", err)
		}
	}
}

// eventually polls cond until it holds, failing the test after wait.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
