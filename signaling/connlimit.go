package signaling

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// connLimit caps, per client address (an IPv4 address, an IPv6 /56: what
// one home or host is given), the connections that are not WebSockets:
// those in their TLS handshake, sending a request, waiting for its answer,
// or idle between requests (Config.MaxConnsPerAddr), and all of them
// together at connsCeiling times that, so that many addresses cannot
// exhaust the process's descriptors either (the WebSockets already open
// keep working). Each is bounded in time (the header timeout, the read and
// write timeouts, the idle timeout), but without a count one address could
// open sockets until the process ran out of descriptors, each holding a
// goroutine and its buffers meanwhile. A WebSocket leaves the count when
// it is upgraded (hijacked): the hub bounds those per user. Loopback,
// private and link-local addresses and the trusted proxies are not
// counted: behind a reverse proxy that is not in --trust-proxy every
// client would share the proxy's address (and one budget), and a
// network's own hosts are trusted as its proxies are.
//
// It runs as the HTTP server's ConnState hook. net/http calls it with
// StateNew on its accept loop, before the connection's goroutine starts,
// and exactly once more with StateHijacked or StateClosed; a connection
// past the limit is closed there, which ends that goroutine at its first
// read. The lock is a leaf.
type connLimit struct {
	max     int
	exempt  func(netip.Addr) bool
	log     *slog.Logger
	refused prometheus.Counter
	warned  atomic.Bool

	mu    sync.Mutex
	n     map[netip.Prefix]int
	total int // the sum of n
}

// connsCeiling is how many times Config.MaxConnsPerAddr all counted
// addresses together may hold: 4,096 by default, well under the
// descriptors a server has (docs/operations.md).
const connsCeiling = 16

func newConnLimit(max int, exempt func(netip.Addr) bool, log *slog.Logger, refused prometheus.Counter) *connLimit {
	return &connLimit{max: max, exempt: exempt, log: log, refused: refused, n: make(map[netip.Prefix]int)}
}

func (l *connLimit) connState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew, http.StateHijacked, http.StateClosed:
	default:
		return
	}
	key, ok := l.key(c)
	if !ok {
		return
	}
	l.mu.Lock()
	if st == http.StateNew {
		l.n[key]++
		l.total++
	} else {
		l.total--
		if l.n[key]--; l.n[key] <= 0 {
			delete(l.n, key)
		}
	}
	over := st == http.StateNew && (l.n[key] > l.max || l.total > connsCeiling*l.max)
	l.mu.Unlock()
	if over {
		l.refuse(c, key)
	}
}

// key is the address c counts under; false for an exempt one.
func (l *connLimit) key(c net.Conn) (netip.Prefix, bool) {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Prefix{}, false
	}
	a := ap.Addr().Unmap().WithZone("")
	if l.exempt(a) {
		return netip.Prefix{}, false
	}
	bits := 32
	if a.Is6() {
		bits = 56
	}
	p, _ := a.Prefix(bits)
	return p, true
}

// tooManyConns is the answer of a plain HTTP connection past the limit,
// an API error like any other.
var tooManyConns = func() []byte {
	body := `{"error":{"code":"too_many_connections","message":"too many connections from your address"}}`
	return []byte("HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nConnection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

// refuse closes c, a new connection past the limit, on the accept loop.
// A plain one is told why first: its send buffer is empty, so the write
// does not wait (and its deadline makes sure). A TLS one is closed
// before its handshake, which costs nothing.
func (l *connLimit) refuse(c net.Conn, key netip.Prefix) {
	l.refused.Inc()
	if _, isTLS := c.(*tls.Conn); !isTLS {
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = c.Write(tooManyConns)
	}
	_ = c.Close()
	level := slog.LevelDebug
	if !l.warned.Swap(true) {
		level = slog.LevelWarn
	}
	l.log.Log(context.Background(), level, "connection refused: its address, or all addresses together, have too many that are not WebSockets; "+
		"if a reverse proxy, set --trust-proxy to its address",
		slog.String("addr", key.String()), slog.Int("limit", l.max))
}
