package turn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v3"
	pionturn "github.com/pion/turn/v4"
	"golang.org/x/net/netutil"
)

const (
	// bindAttempts is how often a port-0 listen retries when the UDP port it
	// got is taken for TCP.
	bindAttempts = 10
	// frameBufSize matches pion's inbound MTU (1600): pion drops bigger
	// frames, so there is no point inspecting them.
	frameBufSize = 1600
	// defaultAuthTimeout is how long a TCP or TLS connection may take,
	// from accept, to present valid credentials (TLS handshake included).
	// A client needs one round trip for the nonce and one to authenticate;
	// anything slower only holds one of MaxTCPConns slots.
	defaultAuthTimeout = 10 * time.Second
	// defaultUnauthPerIP caps the connections of one client IP that have
	// not authenticated yet; more are closed at accept.
	defaultUnauthPerIP = 16
	// tcpIdleTimeout closes an authenticated TCP or TLS connection that
	// sends nothing. A live TURN client refreshes its permissions every few
	// minutes.
	tcpIdleTimeout = 20 * time.Minute
)

// listeners are the sockets a Server serves on.
type listeners struct {
	udp []net.PacketConn
	tcp net.Listener
	tls net.Listener // nil when TURNS is off
}

func (l *listeners) close() error {
	var errs []error
	for _, c := range l.udp {
		errs = append(errs, c.Close())
	}
	for _, ln := range []net.Listener{l.tcp, l.tls} {
		if ln != nil {
			errs = append(errs, ln.Close())
		}
	}
	return errors.Join(errs...)
}

// networks returns the udp and tcp network names for ip's family.
func networks(ip netip.Addr) (udp, tcp string) {
	if ip.Is4() {
		return "udp4", "tcp4"
	}
	return "udp6", "tcp6"
}

// openListeners binds cfg.UDPSockets UDP sockets and one TCP listener on
// cfg.Listen, and the TLS listener when TURNS is on. With port 0, the first
// UDP socket picks the port and the others follow it.
func openListeners(ctx context.Context, cfg Config) (*listeners, error) {
	addr, err := parseHostPort(cfg.Listen)
	if err != nil {
		return nil, err
	}
	var ls *listeners
	for attempt := 0; ; attempt++ {
		ls, err = bindPort(ctx, cfg, addr)
		if err == nil || addr.Port() != 0 || attempt+1 >= bindAttempts {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if cfg.GetCertificate != nil {
		if ls.tls, err = listenTLS(ctx, cfg); err != nil {
			return nil, errors.Join(err, ls.close())
		}
	}
	return ls, nil
}

func bindPort(ctx context.Context, cfg Config, addr netip.AddrPort) (*listeners, error) {
	udpNet, tcpNet := networks(addr.Addr())
	sockets := cfg.UDPSockets
	if !reusePortSupported {
		sockets = 1
	}
	lc := net.ListenConfig{Control: reusePort}
	ls := &listeners{}
	for i := 0; i < sockets; i++ {
		pc, err := lc.ListenPacket(ctx, udpNet, addr.String())
		if err != nil {
			return nil, errors.Join(fmt.Errorf("listen %s %s: %w", udpNet, addr, err), ls.close())
		}
		setBuffers(pc, cfg.SocketBuffer)
		ls.udp = append(ls.udp, pc)
		if addr.Port() == 0 {
			addr = netip.AddrPortFrom(addr.Addr(), uint16(pc.LocalAddr().(*net.UDPAddr).Port))
		}
	}
	var plain net.ListenConfig
	tcp, err := plain.Listen(ctx, tcpNet, addr.String())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("listen %s %s: %w", tcpNet, addr, err), ls.close())
	}
	ls.tcp = netutil.LimitListener(tcp, cfg.MaxTCPConns)
	return ls, nil
}

func listenTLS(ctx context.Context, cfg Config) (net.Listener, error) {
	addr, err := parseHostPort(cfg.TLSListen)
	if err != nil {
		return nil, err
	}
	_, tcpNet := networks(addr.Addr())
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, tcpNet, addr.String())
	if err != nil {
		return nil, fmt.Errorf("listen TLS %s: %w", addr, err)
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cfg.GetCertificate}
	return tls.NewListener(netutil.LimitListener(ln, cfg.MaxTCPConns), conf), nil
}

// secretChecker finds which of several secrets signed a message, for the
// authenticator (see secretHints).
type secretChecker struct {
	secrets [][]byte
	hints   *secretHints
}

func (c *secretChecker) active() bool { return len(c.secrets) > 1 }

// inspect leaves a hint when b is a STUN message whose MESSAGE-INTEGRITY
// verifies with one of the secrets. It works on a copy: pion decodes b
// itself afterwards.
func (c *secretChecker) inspect(b []byte, src net.Addr) {
	if !stun.IsMessage(b) {
		return // ChannelData: the hot path, no credentials
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil || !m.Contains(stun.AttrMessageIntegrity) {
		return
	}
	var username stun.Username
	var realm stun.Realm
	if username.GetFrom(m) != nil || realm.GetFrom(m) != nil {
		return
	}
	u, r := username.String(), realm.String()
	for i, s := range c.secrets {
		key := pionturn.GenerateAuthKey(u, r, restPassword(s, u))
		if stun.MessageIntegrity(key).Check(m) == nil {
			c.hints.put(src, u, i)
			return
		}
	}
}

// inspectingPacketConn runs the secret checker on every datagram read.
type inspectingPacketConn struct {
	net.PacketConn
	checker *secretChecker
}

func (c *inspectingPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if err == nil {
		c.checker.inspect(p[:n], addr)
	}
	return n, addr, err
}

// streamListener wraps each accepted TCP or TLS connection in a streamConn
// and tracks them: pion's Close closes the listener but not the
// connections it accepted, whose goroutines would live on. It also keeps
// unauthenticated connections short and few: each must authenticate
// within authTimeout of its accept (authenticated marks it, from pion's
// OnAuth event), and one client IP may hold at most unauthPerIP of them.
type streamListener struct {
	net.Listener
	checker     *secretChecker
	authTimeout time.Duration
	unauthPerIP int
	refused     func() // counts a connection closed at accept

	mu     sync.Mutex
	conns  map[*streamConn]struct{}
	byAddr map[string]*streamConn // remote address -> connection
	unauth map[netip.Addr]int     // client IP -> unauthenticated connections
	closed bool
}

func newStreamListener(ln net.Listener, checker *secretChecker) *streamListener {
	return &streamListener{Listener: ln, checker: checker,
		authTimeout: defaultAuthTimeout, unauthPerIP: defaultUnauthPerIP, refused: func() {},
		conns: make(map[*streamConn]struct{}), byAddr: make(map[string]*streamConn), unauth: make(map[netip.Addr]int)}
}

// Accept returns the next connection, closing at once those of a client IP
// that already holds unauthPerIP unauthenticated ones. It never returns
// an error for them: pion stops accepting on the first error.
func (l *streamListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if sc, err := l.track(c); sc != nil || err != nil {
			return sc, err
		}
		l.refused()
		_ = c.Close()
	}
}

// track registers c, or returns nil, nil when its IP is over the cap.
func (l *streamListener) track(c net.Conn) (*streamConn, error) {
	ip := remoteIP(c)
	sc := &streamConn{Conn: c, checker: l.checker, owner: l, ip: ip,
		deadline: time.Now().Add(l.authTimeout), frames: newFrameReader(c), buf: make([]byte, frameBufSize)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.Join(net.ErrClosed, c.Close())
	}
	if l.unauth[ip] >= l.unauthPerIP {
		return nil, nil
	}
	l.unauth[ip]++
	l.conns[sc] = struct{}{}
	l.byAddr[c.RemoteAddr().String()] = sc
	return sc, nil
}

func remoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// authenticated marks the connection from src as authenticated: from now
// on it lives as long as it is used.
func (l *streamListener) authenticated(src net.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.byAddr[src.String()]
	if !ok || c.authed.Load() {
		return
	}
	c.authed.Store(true)
	l.uncountLocked(c.ip)
}

func (l *streamListener) uncountLocked(ip netip.Addr) {
	if l.unauth[ip]--; l.unauth[ip] <= 0 {
		delete(l.unauth, ip)
	}
}

// Close closes the listener and every connection it accepted.
func (l *streamListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	conns := make([]*streamConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close() // pion closes them too when their read loop ends
	}
	return err
}

func (l *streamListener) forget(c *streamConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.conns[c]; !ok {
		return
	}
	delete(l.conns, c)
	if l.byAddr[c.RemoteAddr().String()] == c {
		delete(l.byAddr, c.RemoteAddr().String())
	}
	if !c.authed.Load() {
		l.uncountLocked(c.ip)
	}
}

// streamConn bounds the TLS handshake, the time to authenticate and the
// idle time of a TURN-over-TCP connection, and cuts the stream into whole
// frames (see frameReader) so that pion reads exactly one frame at a time;
// with several secrets it inspects each frame before pion reads it.
type streamConn struct {
	net.Conn
	owner      *streamListener
	checker    *secretChecker
	ip         netip.Addr
	deadline   time.Time   // to authenticate by, from accept
	authed     atomic.Bool // set by the listener from pion's OnAuth
	handshaked bool
	frames     *frameReader
	buf        []byte
	pending    []byte
}

func (c *streamConn) Read(p []byte) (int, error) {
	if !c.handshaked {
		if err := c.handshake(); err != nil {
			return 0, err
		}
	}
	for len(c.pending) == 0 {
		deadline := c.deadline
		if c.authed.Load() {
			deadline = time.Now().Add(tcpIdleTimeout)
		}
		if err := c.Conn.SetReadDeadline(deadline); err != nil {
			return 0, err
		}
		frame, err := c.frames.next(c.buf)
		if err != nil {
			return 0, err
		}
		if c.checker.active() {
			c.checker.inspect(frame, c.Conn.RemoteAddr())
		}
		c.pending = frame
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Close closes the connection and drops it from its listener's set.
func (c *streamConn) Close() error {
	c.owner.forget(c)
	return c.Conn.Close()
}

func (c *streamConn) handshake() error {
	c.handshaked = true
	tc, ok := c.Conn.(*tls.Conn)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithDeadline(context.Background(), c.deadline)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	return nil
}
