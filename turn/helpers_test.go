package turn

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/metricstest"
	"github.com/khadga/khadga/internal/testlog"
	pionturn "github.com/pion/turn/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// waitTimeout is generous: the CI machine is slow and shared.
const waitTimeout = 10 * time.Second

var testSecret = []byte("test-secret-0123456789")

// testLogger logs to t at testLogLevel (pion's debug output is huge).
func testLogger(t testing.TB) *slog.Logger { return testlog.New(t, testLogLevel) }

// testListen is where test servers listen: two UDP sockets and TCP on one
// free port of 127.0.0.1.
var testListen = ListenConfig{Addr: "127.0.0.1:0", UDPSockets: 2}

// startServer runs a server on testListen with testSecret; edit adjusts
// the config. It returns the server and the registry of its metrics.
func startServer(t *testing.T, edit func(*Config)) (*Server, *prometheus.Registry) {
	t.Helper()
	return startServerOn(t, testListen, edit)
}

// startServerOn is startServer on the listeners lc describes.
func startServerOn(t *testing.T, lc ListenConfig, edit func(*Config)) (*Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{
		Secrets:    [][]byte{testSecret},
		Logger:     testLogger(t),
		Registerer: reg,
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg, listen(t, lc))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, reg
}

// listen opens the listeners lc describes.
func listen(t testing.TB, lc ListenConfig) *Listeners {
	t.Helper()
	ls, err := Listen(context.Background(), lc)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	return ls
}

// newClient is a pion TURN client over UDP to s, listening already.
func newClient(t *testing.T, server net.Addr, username, password string) *pionturn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startClient(t, conn, server.String(), username, password)
}

func startClient(t *testing.T, conn net.PacketConn, server, username, password string) *pionturn.Client {
	t.Helper()
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: server,
		TURNServerAddr: server,
		Conn:           conn,
		Username:       username,
		Password:       password,
		RTO:            time.Second, // fewer retransmissions on a slow CI machine
		LoggerFactory:  slogFactory{log: testLogger(t)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		conn.Close()
	})
	return c
}

// mint returns fresh credentials for user with testSecret.
func mint(user string) (string, string) {
	u, p, _ := Mint(testSecret, user, time.Hour, time.Now())
	return u, p
}

// listenPeer is a UDP socket standing for a peer on the far side.
func listenPeer(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readWithin reads one datagram or fails the test after waitTimeout.
func readWithin(t *testing.T, c net.PacketConn) ([]byte, net.Addr) {
	t.Helper()
	buf := make([]byte, 1500)
	if err := c.SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return buf[:n], from
}

// nothingQueued asserts that c has no datagram waiting. Callers first make
// sure that anything the server sent to c would already be there (see
// TestPolicyDeniesPeers).
func nothingQueued(t *testing.T, c net.PacketConn) {
	t.Helper()
	buf := make([]byte, 1500)
	if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	n, from, err := c.ReadFrom(buf)
	var ne net.Error
	if err == nil {
		t.Fatalf("denied peer received %q from %v", buf[:n], from)
	}
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read: %v", err)
	}
}

// metricValue is metricstest.Value.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	return metricstest.Value(t, reg, name, want)
}

// relayRoundTrip sends ping from the client's relay to peer and pong back,
// and checks both arrive intact.
func relayRoundTrip(t *testing.T, relay net.PacketConn, peer *net.UDPConn) {
	t.Helper()
	ping := []byte("ping through khadga turn!") // 25 bytes: padded over TCP
	if _, err := relay.WriteTo(ping, peer.LocalAddr()); err != nil {
		t.Fatalf("relay write: %v", err)
	}
	got, from := readWithin(t, peer)
	if !bytes.Equal(got, ping) {
		t.Fatalf("peer got %q, want %q", got, ping)
	}
	if from.String() != relay.LocalAddr().String() {
		t.Fatalf("peer got it from %v, want the relay %v", from, relay.LocalAddr())
	}
	// Longer than 4 bytes: pion's STUNConn (TCP framing) holds back frames
	// under 9 bytes, such as ChannelData with up to 4 bytes of payload,
	// until more bytes arrive. Real WebRTC packets are never that small.
	pong := []byte("pong from the peer")
	if _, err := peer.WriteTo(pong, from); err != nil {
		t.Fatal(err)
	}
	got, _ = readWithin(t, relay)
	if !bytes.Equal(got, pong) {
		t.Fatalf("client got %q, want %q", got, pong)
	}
}

var testLogLevel = slog.LevelInfo
