package signaling_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestConnectionsPerAddress: one address opens a hundred sockets that
// never finish their TLS handshake (wss) or their request headers (ws).
// Each would hold a goroutine, buffers and a descriptor for the header
// timeout, and a few thousand such from one address held about 60 MiB
// (TLS); past Config.MaxConnsPerAddr the server closes them at once
// (plain HTTP gets 429 first), while users from other addresses sign in,
// connect and relay, and the address gets its slots back as its sockets
// close.
func TestConnectionsPerAddress(t *testing.T) { forSchemes(t, testConnectionsPerAddress) }

func testConnectionsPerAddress(t *testing.T, opts signalingtest.Options) {
	skipUnlessLoopbackRange(t)
	const limit, sockets = 8, 100
	tlsOn := opts.TLS
	opts.Config.MaxConnsPerAddr = limit
	signaling.CountLoopbackConns(&opts.Config)
	s := signalingtest.Start(t, opts)
	alice := s.User(t, "alice")
	s.Register(t, "bob", "correct horse battery")
	runtime.GC()
	baseline := runtime.NumGoroutine()

	// The attacker is 127.0.0.2; the users are 127.0.0.1.
	addr := strings.TrimPrefix(strings.TrimPrefix(s.URL, "https://"), "http://")
	attacker := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	closed := make(chan string, sockets)
	var held []net.Conn
	for range sockets {
		c, err := attacker.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		if !tlsOn {
			fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		}
		go func() {
			// A refused socket is closed at once; a held one only at
			// the header timeout (10 s), after this read gives up.
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, err := io.ReadAll(c)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				closed <- "held"
			} else {
				closed <- string(b) // the 429, or a reset that lost it: the server had not read the headers
			}
		}()
	}
	refused := 0
	for i := 0; i < sockets && refused < sockets-limit; i++ {
		if got := <-closed; got != "held" {
			refused++
			if got != "" && !strings.HasPrefix(got, "HTTP/1.1 429 ") {
				t.Errorf("a refused socket got %q", got)
			}
		}
	}
	if refused != sockets-limit {
		t.Fatalf("%d of %d sockets from one address refused, want %d", refused, sockets, sockets-limit)
	}
	if !tlsOn {
		// One more that has sent nothing is told why.
		c, err := attacker.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(signalingtest.Timeout))
		b, _ := io.ReadAll(c)
		c.Close()
		if !strings.HasPrefix(string(b), "HTTP/1.1 429 ") || !strings.Contains(string(b), "too_many_connections") {
			t.Errorf("a socket past the limit got %q", b)
		}
	}

	// Meanwhile others sign in, connect and relay.
	a := s.Connect(t, alice.AccessToken, url.Values{"presence": {"0"}})
	b := s.Connect(t, s.Login(t, "bob", "correct horse battery").AccessToken, url.Values{"presence": {"0"}})
	a.Join("lobby")
	b.Join("lobby")
	a.Expect(proto.TypePeerJoined)
	a.Send(&proto.Message{Type: proto.TypeSignal, ID: "s", To: b.Welcome.Peer, Data: []byte(`{}`)})
	b.Expect(proto.TypeSignal)

	// The address gets its slots back once its sockets close.
	for _, c := range held {
		c.Close()
	}
	a.Close()
	b.Close()
	waitGoroutines(t, baseline)
	c, err := attacker.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if tlsOn {
		tc := signalingtest.ClientTLS()
		tc.ServerName = "127.0.0.1"
		c = tls.Client(c, tc)
	}
	_ = c.SetDeadline(time.Now().Add(signalingtest.Timeout))
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if line, err := bufio.NewReader(c).ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 200 ") {
		t.Fatalf("after its sockets closed, the address got %q, %v", line, err)
	}
}

// TestConnectionsAllAddresses: past 16 times Config.MaxConnsPerAddr
// from all addresses together, new connections are refused as well, so
// that many addresses, each within its own limit, cannot exhaust the
// process's descriptors.
func TestConnectionsAllAddresses(t *testing.T) {
	skipUnlessLoopbackRange(t)
	const limit, addrs = 2, 17 // 34 sockets against a ceiling of 32
	opts := signalingtest.Options{Config: signaling.Config{MaxConnsPerAddr: limit}}
	signaling.CountLoopbackConns(&opts.Config)
	s := signalingtest.Start(t, opts)
	addr := strings.TrimPrefix(s.URL, "http://")
	refused := make(chan bool, limit*addrs)
	for i := range addrs {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(i+1))}}
		for range limit {
			c, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
			go func() {
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err := io.ReadAll(c)
				ne, ok := err.(net.Error)
				refused <- !(ok && ne.Timeout())
			}()
		}
	}
	n := 0
	for range limit * addrs {
		if <-refused {
			n++
		}
	}
	if want := limit*addrs - 16*limit; n != want {
		t.Fatalf("%d of %d stalled sockets from %d addresses refused, want %d", n, limit*addrs, addrs, want)
	}
}

// skipUnlessLoopbackRange skips a test that dials from other loopback
// addresses than 127.0.0.1, which only Linux has without configuration.
func skipUnlessLoopbackRange(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("dials from 127.0.0.2 and beyond, which only Linux routes to loopback by default")
	}
}

// TestStalledHandshakesAreDropped: sockets that stop in the TLS handshake
// (before the ClientHello, or half-way through its record) or in a
// WebSocket upgrade's headers are closed at the header timeout, while a
// user signs in and connects.
func TestStalledHandshakesAreDropped(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{TLS: true, Config: signaling.Config{HeaderTimeout: 300 * time.Millisecond}})
	addr := strings.TrimPrefix(s.URL, "https://")
	upgrade := "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-Web"
	stalls := map[string]func(net.Conn) net.Conn{
		"before the ClientHello": func(c net.Conn) net.Conn { return c },
		"in the ClientHello":     func(c net.Conn) net.Conn { c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}); return c },
		"in the upgrade's headers": func(c net.Conn) net.Conn {
			tc := signalingtest.ClientTLS()
			tc.ServerName = "127.0.0.1"
			tlc := tls.Client(c, tc)
			if err := tlc.Handshake(); err != nil {
				t.Fatal(err)
			}
			fmt.Fprint(tlc, upgrade)
			return tlc
		},
	}
	ended := make(chan string, len(stalls))
	start := time.Now()
	for name, stall := range stalls {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c = stall(c)
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(signalingtest.Timeout))
			_, err := io.ReadAll(c)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				name += " was never dropped"
			}
			ended <- name
		}()
	}
	s.Connect(t, s.User(t, "alice").AccessToken, url.Values{"presence": {"0"}}).Close()
	for range stalls {
		if got := <-ended; strings.HasSuffix(got, "never dropped") {
			t.Error(got)
		}
	}
	t.Logf("all dropped after %v", time.Since(start))
}

// TestCompressionIsNotNegotiated: a client that offers permessage-deflate
// gets no extension, so there is no inflater to bomb, and a compressed
// frame (RSV1) anyway is a protocol error, close 1002.
func TestCompressionIsNotNegotiated(t *testing.T) { forSchemes(t, testCompressionIsNotNegotiated) }

func testCompressionIsNotNegotiated(t *testing.T, opts signalingtest.Options) {
	s := signalingtest.Start(t, opts)
	tok := s.User(t, "alice").AccessToken
	d := websocket.Dialer{Subprotocols: []string{proto.Subprotocol}, EnableCompression: true,
		TLSClientConfig: signalingtest.ClientTLS(), HandshakeTimeout: signalingtest.Timeout}
	ws, resp, err := d.Dial(s.WSURL+"?presence=0", bearer(tok))
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		t.Fatalf("the server negotiated %q", ext)
	}
	_ = ws.SetReadDeadline(time.Now().Add(signalingtest.Timeout))
	if _, _, err := ws.ReadMessage(); err != nil { // welcome
		t.Fatal(err)
	}
	// {"type":"ping"} deflated, with RSV1 set, masked with a zero key.
	deflated := []byte{0xaa, 0x56, 0x2a, 0xa9, 0x2c, 0x48, 0x55, 0xb2, 0x52, 0x2a, 0xc8, 0xcc, 0x4b, 0x57, 0xaa, 0x05, 0x00}
	frame := append([]byte{0xc1, 0x80 | byte(len(deflated)), 0, 0, 0, 0}, deflated...)
	if _, err := ws.NetConn().Write(frame); err != nil {
		t.Fatal(err)
	}
	for {
		if _, _, err = ws.ReadMessage(); err != nil {
			break
		}
	}
	if code := signalingtest.CloseCode(err); code != websocket.CloseProtocolError {
		t.Fatalf("close code %d (%v), want 1002", code, err)
	}
}
