package turn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
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
	// from accept (or from the end of its allocation), to get an
	// allocation with valid credentials (TLS handshake included). A client
	// needs one round trip for the nonce and one to allocate; anything
	// slower, or refused, only holds one of MaxTCPConns slots.
	defaultAuthTimeout = 10 * time.Second
	// defaultUnauthPerIP caps the connections of one client IP (an IPv6
	// /64) that hold no allocation yet; more are closed at accept.
	defaultUnauthPerIP = 16
	// tcpIdleTimeout closes a TCP or TLS connection with an allocation
	// that sends nothing. A live TURN client refreshes its permissions every few
	// minutes.
	tcpIdleTimeout = 20 * time.Minute
)

// Listeners are the sockets a Server serves on. The caller opens them, with
// Listen or in any other way (as pion's own ServerConfig takes packet conns
// and listeners), and New owns them from then on: it closes them when it
// fails and in Close.
type Listeners struct {
	// UDP are sockets bound to one address, at least one. Pion reads each
	// socket from one goroutine, so Listen binds several with SO_REUSEPORT
	// and the kernel spreads clients over them.
	UDP []net.PacketConn
	// TCP accepts TURN over TCP; nil leaves TCP out.
	TCP net.Listener
	// TLS accepts TURNS: the server speaks TLS on it with
	// Config.GetCertificate, which must then be set. Nil leaves TURNS out.
	TLS net.Listener
}

// Close closes every socket.
func (l *Listeners) Close() error {
	var errs []error
	for _, c := range l.UDP {
		errs = append(errs, c.Close())
	}
	for _, ln := range []net.Listener{l.TCP, l.TLS} {
		if ln != nil {
			errs = append(errs, ln.Close())
		}
	}
	return errors.Join(errs...)
}

// ListenConfig says where Listen binds. The zero value of every field means
// its default.
type ListenConfig struct {
	// Addr is the host:port served over both UDP and TCP (default
	// DefaultListen). Port 0 picks a free port, shared by UDP and TCP.
	Addr string
	// TLSAddr is the host:port for TURNS; empty opens no TLS listener.
	TLSAddr string
	// UDPSockets is the number of SO_REUSEPORT UDP sockets on Addr (default
	// runtime.NumCPU(); one where SO_REUSEPORT is missing).
	UDPSockets int
	// SocketBuffer is the buffer size asked for each UDP socket, as
	// Config.SocketBuffer is for the relays.
	SocketBuffer int
}

// WithDefaults returns c with every zero field set to its default.
func (c ListenConfig) WithDefaults() ListenConfig {
	if c.Addr == "" {
		c.Addr = DefaultListen
	}
	if c.UDPSockets == 0 {
		c.UDPSockets = runtime.NumCPU()
	}
	if c.SocketBuffer == 0 {
		c.SocketBuffer = DefaultSocketBuffer
	}
	return c
}

// Validate reports every problem of c (after defaults) at once, joined into
// one error that wraps ErrInvalidConfig.
func (c ListenConfig) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if _, err := parseHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("listen %q: %w", c.Addr, err))
	}
	if c.TLSAddr != "" {
		if _, err := parseHostPort(c.TLSAddr); err != nil {
			errs = append(errs, fmt.Errorf("TLS listen %q: %w", c.TLSAddr, err))
		}
	}
	if c.UDPSockets < 1 || c.UDPSockets > maxUDPSockets {
		errs = append(errs, fmt.Errorf("UDP sockets %d: want 1 to %d", c.UDPSockets, maxUDPSockets))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}

// A ListenError is Listen's failure to bind one of its addresses, so that
// a caller can name the setting behind it (khadga's --turn-listen or
// --turn-tls-listen). Its message is the system's, which names the
// network and address already.
type ListenError struct {
	TLS  bool   // ListenConfig.TLSAddr's, else ListenConfig.Addr's
	Addr string // as configured
	Err  error
}

func (e *ListenError) Error() string { return e.Err.Error() }
func (e *ListenError) Unwrap() error { return e.Err }

// networks returns the udp and tcp network names for ip's family.
func networks(ip netip.Addr) (udp, tcp string) {
	if ip.Is4() {
		return "udp4", "tcp4"
	}
	return "udp6", "tcp6"
}

// Listen binds c.UDPSockets UDP sockets and one TCP listener on c.Addr,
// and the TLS listener when c.TLSAddr is set. With port 0, the first UDP
// socket picks the port and the others follow it; if TCP finds that port
// taken, Listen tries again with another.
func Listen(ctx context.Context, c ListenConfig) (*Listeners, error) {
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	addr, _ := parseHostPort(c.Addr) // validated
	var ls *Listeners
	var err error
	for attempt := 0; ; attempt++ {
		ls, err = bindPort(ctx, c, addr)
		if err == nil || addr.Port() != 0 || attempt+1 >= bindAttempts {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if c.TLSAddr != "" {
		if ls.TLS, err = listenTCP(ctx, c.TLSAddr); err != nil {
			return nil, errors.Join(err, ls.Close())
		}
	}
	return ls, nil
}

func bindPort(ctx context.Context, c ListenConfig, addr netip.AddrPort) (*Listeners, error) {
	udpNet, tcpNet := networks(addr.Addr())
	sockets := c.UDPSockets
	if !reusePortSupported {
		sockets = 1
	}
	lc := net.ListenConfig{Control: reusePort}
	ls := &Listeners{}
	for i := 0; i < sockets; i++ {
		pc, err := lc.ListenPacket(ctx, udpNet, addr.String())
		if err != nil {
			return nil, errors.Join(&ListenError{Addr: c.Addr, Err: err}, ls.Close())
		}
		setBuffers(pc, c.SocketBuffer)
		ls.UDP = append(ls.UDP, pc)
		if addr.Port() == 0 {
			addr = netip.AddrPortFrom(addr.Addr(), uint16(pc.LocalAddr().(*net.UDPAddr).Port))
		}
	}
	var plain net.ListenConfig
	tcp, err := plain.Listen(ctx, tcpNet, addr.String())
	if err != nil {
		return nil, errors.Join(&ListenError{Addr: c.Addr, Err: err}, ls.Close())
	}
	ls.TCP = tcp
	return ls, nil
}

func listenTCP(ctx context.Context, hostPort string) (net.Listener, error) {
	addr, err := parseHostPort(hostPort)
	if err != nil {
		return nil, err
	}
	_, tcpNet := networks(addr.Addr())
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, tcpNet, addr.String())
	if err != nil {
		return nil, &ListenError{TLS: true, Addr: hostPort, Err: err}
	}
	return ln, nil
}

// serving are the listeners as the server uses them: TCP and TLS capped at
// Config.MaxTCPConns connections each, TLS with the server's certificate.
func serving(ls *Listeners, cfg Config) *Listeners {
	out := &Listeners{UDP: ls.UDP}
	if ls.TCP != nil {
		out.TCP = netutil.LimitListener(ls.TCP, cfg.MaxTCPConns)
	}
	if ls.TLS != nil {
		conf := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cfg.GetCertificate}
		out.TLS = tls.NewListener(netutil.LimitListener(ls.TLS, cfg.MaxTCPConns), conf)
	}
	return out
}

// check reports what New cannot serve with.
func (l *Listeners) check(cfg Config) error {
	var errs []error
	if len(l.UDP) == 0 {
		errs = append(errs, errors.New("no UDP socket: give at least one"))
	}
	for i, c := range l.UDP {
		if _, ok := c.LocalAddr().(*net.UDPAddr); !ok {
			errs = append(errs, fmt.Errorf("UDP socket %d is on %s, not UDP", i+1, c.LocalAddr().Network()))
		}
	}
	switch {
	case l.TLS != nil && cfg.GetCertificate == nil:
		errs = append(errs, errors.New("a TLS listener without a certificate (GetCertificate)"))
	case l.TLS == nil && cfg.GetCertificate != nil:
		errs = append(errs, errors.New("a certificate (GetCertificate) without a TLS listener"))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}

// secretChecker finds which of several secrets signed a message, for the
// authenticator (see secretHints).
//
// Trying every secret costs a key derivation and an HMAC each, for every
// message anyone sends with a MESSAGE-INTEGRITY attribute, authenticated
// or not. The work per message is bounded: a username that is malformed
// or expired costs nothing (the authenticator refuses it anyway); a
// username whose secret was found before is tried with that secret first
// (known, a bounded cache), which settles every message of a client with
// credentials after its first; and trying the other secrets, a full scan,
// takes one of the source IP's scan tokens (scanBurst, refilled at
// scanRate a second; an IPv6 /64 shares one budget) when it finds
// nothing. Without a token only the known secret, or the first one (which
// mints), is tried.
type secretChecker struct {
	secrets *secretSet
	hints   *secretHints
	now     func() time.Time // nil: time.Now

	mu      sync.Mutex
	known   map[string]string     // username -> the secret that verified it
	scans   map[netip.Addr]bucket // clientKey -> failed-scan tokens
	pruneAt time.Time             // when a full scans table may be pruned again
	hmacs   atomic.Int64          // secrets tried, for tests and benchmarks
}

// Bounds of the secret checker's work and memory.
const (
	scanRate  = 2.0  // failed full scans a second per source IP, sustained
	scanBurst = 10.0 // and in a burst
	maxKnown  = 4096 // remembered usernames; the cache is emptied when full
	maxScans  = 4096 // source IPs with a scan budget (see candidates)
)

// bucket is a token bucket: tokens at time at.
type bucket struct {
	tokens float64
	at     time.Time
}

func (c *secretChecker) active() bool { return len(c.secrets.load()) > 1 }

// inspect leaves a hint when b is a STUN message whose MESSAGE-INTEGRITY
// verifies with one of the secrets. It works on a copy: pion decodes b
// itself afterwards.
func (c *secretChecker) inspect(b []byte, src net.Addr) {
	secrets := c.secrets.load()
	if len(secrets) < 2 || !stun.IsMessage(b) {
		return // one secret needs no hint; ChannelData (the hot path) has no credentials
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
	now := time.Now()
	if c.now != nil {
		now = c.now()
	}
	if _, _, err := parseUsername(u, now); err != nil {
		return
	}
	try, full := c.candidates(secrets, u, src, now)
	for _, i := range try {
		c.hmacs.Add(1)
		key := pionturn.GenerateAuthKey(u, r, restPassword(secrets[i], u))
		if stun.MessageIntegrity(key).Check(m) == nil {
			c.hints.put(src, u, secrets[i])
			c.remember(u, secrets[i])
			return
		}
	}
	if full {
		c.charge(src)
	}
}

// candidates are the indexes of the secrets to try for username from src,
// in order: the one known for it, if any, and then, while src has a scan
// token, all the others (full); without a token, the known one or else
// the first. A username can be known under the wrong secret when two
// servers in the middle of a rotation mint it in the same second.
func (c *secretChecker) candidates(secrets [][]byte, username string, src net.Addr, now time.Time) (try []int, full bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	known := -1
	if k, ok := c.known[username]; ok {
		known = index(secrets, []byte(k))
	}
	first := max(known, 0)
	try = append(try, first)
	if c.scans == nil {
		c.scans = make(map[netip.Addr]bucket)
	}
	ip := clientKey(src)
	bk, ok := c.scans[ip]
	if !ok && !c.makeRoom(now) {
		return try, false
	}
	if !ok {
		bk = bucket{tokens: scanBurst, at: now}
	}
	bk.tokens = min(scanBurst, bk.tokens+now.Sub(bk.at).Seconds()*scanRate)
	bk.at = now
	c.scans[ip] = bk
	if bk.tokens < 1 {
		return try, false
	}
	for i := range secrets {
		if i != first {
			try = append(try, i)
		}
	}
	return try, true
}

// makeRoom reports whether the scans table has room for one more source,
// forgetting the sources whose budgets are whole again if it is full (a
// whole budget is what a new source gets). c.mu is held.
//
// While every remembered source is still spending, a new one gets no full
// scan: the table was emptied when full, so a host with 4,097 IPv6 /64s
// (a /48 has 65,536) gave every one of them, itself included, a new
// budget each time round. Pruning walks the whole table, so it runs at
// most once a second, however many new sources come.
func (c *secretChecker) makeRoom(now time.Time) bool {
	if len(c.scans) < maxScans {
		return true
	}
	if now.Before(c.pruneAt) {
		return false
	}
	c.pruneAt = now.Add(time.Second)
	for ip, bk := range c.scans {
		if bk.tokens+now.Sub(bk.at).Seconds()*scanRate >= scanBurst {
			delete(c.scans, ip)
		}
	}
	return len(c.scans) < maxScans
}

// charge spends a scan token of src: a full scan found no secret.
func (c *secretChecker) charge(src net.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ip := clientKey(src)
	if bk, ok := c.scans[ip]; ok {
		bk.tokens--
		c.scans[ip] = bk
	}
}

// remember records that secret verified username.
func (c *secretChecker) remember(username string, secret []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.known == nil || len(c.known) >= maxKnown {
		c.known = make(map[string]string)
	}
	c.known[username] = string(secret)
}

// forget drops what remember learnt, after the secrets changed: a removed
// secret's usernames should not keep their place, nor hold memory.
func (c *secretChecker) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.known = nil
}

// clientKey is the client that a message or a connection from a counts
// against (its scan tokens, its unauthenticated connections): its IP, or
// for IPv6 its /64, which one host usually holds whole and can spread its
// messages and connections over (signaling/auth keys its limits on
// addresses so too).
func clientKey(a net.Addr) netip.Addr {
	ip := srcIP(a)
	if ip.Is6() {
		p, _ := ip.WithZone("").Prefix(64)
		return p.Addr()
	}
	return ip
}

func srcIP(a net.Addr) netip.Addr {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// inspectingPacketConn runs the secret checker on every datagram read,
// and notes the channel a ChannelBind request asks for (see permit).
type inspectingPacketConn struct {
	net.PacketConn
	checker *secretChecker
	channel atomic.Uint32 // channelBindOf the datagram read last
}

func (c *inspectingPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if err == nil {
		c.checker.inspect(p[:n], addr)
		c.channel.Store(uint32(channelBindOf(p[:n])))
	}
	return n, addr, err
}

// channelBind is the channel number of the request pion is handling, if
// it is a ChannelBind, else 0. Pion calls the permission handler while it
// handles a request, on the goroutine that read it and before it reads
// the next.
func (c *inspectingPacketConn) channelBind() uint16 { return uint16(c.channel.Load()) }

// channelBindType is the message type of a ChannelBind request.
var channelBindType = stun.NewType(stun.MethodChannelBind, stun.ClassRequest).Value()

// channelBindOf returns the CHANNEL-NUMBER of b if b is a ChannelBind
// request, else 0 (never a valid channel number, RFC 8656 12). Every
// other message costs a look at its first two bytes.
func channelBindOf(b []byte) uint16 {
	if len(b) < 2 || uint16(b[0])<<8|uint16(b[1]) != channelBindType || !stun.IsMessage(b) {
		return 0
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if m.Decode() != nil {
		return 0
	}
	v, err := m.Get(stun.AttrChannelNumber)
	if err != nil || len(v) < 2 {
		return 0
	}
	return uint16(v[0])<<8 | uint16(v[1])
}

// streamListener wraps each accepted TCP or TLS connection in a streamConn
// and tracks them: pion's Close closes the listener but not the
// connections it accepted, whose goroutines would live on. It also keeps
// connections without an allocation short and few: each must allocate
// within authTimeout of its accept (allocated marks it, from pion's
// OnAllocationCreated event), and one client IP (an IPv6 /64: clientKey)
// may hold at most unauthPerIP of them.
type streamListener struct {
	net.Listener
	checker     *secretChecker
	authTimeout time.Duration
	unauthPerIP int
	refused     func() // counts a connection closed at accept

	mu     sync.Mutex
	conns  map[*streamConn]struct{}
	byAddr map[string]*streamConn // remote address -> connection
	unauth map[netip.Addr]int     // clientKey -> unauthenticated connections
	closed bool
}

func newStreamListener(ln net.Listener, checker *secretChecker) *streamListener {
	return &streamListener{Listener: ln, checker: checker,
		authTimeout: defaultAuthTimeout, unauthPerIP: defaultUnauthPerIP, refused: func() {},
		conns: make(map[*streamConn]struct{}), byAddr: make(map[string]*streamConn), unauth: make(map[netip.Addr]int)}
}

// Accept returns the next connection, closing at once those of a client IP
// (an IPv6 /64) that already holds unauthPerIP unauthenticated ones. It never returns
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
	ip := clientKey(c.RemoteAddr())
	sc := &streamConn{Conn: c, checker: l.checker, owner: l, ip: ip,
		frames: newFrameReader(c), buf: make([]byte, frameBufSize)}
	sc.deadline.Store(time.Now().Add(l.authTimeout).UnixNano())
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

// allocated marks the connection from src as holding an allocation: from
// now on it lives as long as it is used. Authenticating is not enough:
// pion checks credentials before the quotas, so a connection whose
// allocations the user quota refuses would otherwise hold one of
// MaxTCPConns slots for as long as it sends a message every
// tcpIdleTimeout, and one user's refused connections could fill them all.
func (l *streamListener) allocated(src net.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.byAddr[src.String()]
	if !ok || c.authed.Load() {
		return
	}
	c.authed.Store(true)
	l.uncountLocked(c.ip)
}

// channelBind is the channelBind of the request pion is handling on the
// connection from src (see inspectingPacketConn.channelBind).
func (l *streamListener) channelBind(src net.Addr) uint16 {
	l.mu.Lock()
	c, ok := l.byAddr[src.String()]
	l.mu.Unlock()
	if !ok {
		return 0
	}
	return uint16(c.channel.Load())
}

// released puts the connection from src, whose allocation ended, back on
// the clock: it may allocate again within authTimeout, or it is closed.
func (l *streamListener) released(src net.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.byAddr[src.String()]
	if !ok || !c.authed.Load() {
		return
	}
	deadline := time.Now().Add(l.authTimeout)
	c.deadline.Store(deadline.UnixNano())
	c.authed.Store(false)
	l.unauth[c.ip]++
	_ = c.Conn.SetReadDeadline(deadline) // wakes a read waiting on the idle timeout
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

// streamConn bounds the TLS handshake, the time to allocate and the
// idle time of a TURN-over-TCP connection, and cuts the stream into whole
// frames (see frameReader) so that pion reads exactly one frame at a time;
// with several secrets it inspects each frame before pion reads it.
type streamConn struct {
	net.Conn
	owner      *streamListener
	checker    *secretChecker
	ip         netip.Addr   // clientKey of its remote address
	deadline   atomic.Int64 // unix ns to allocate by, from accept or the end of an allocation
	authed     atomic.Bool  // holds an allocation: set by the listener from pion's events
	handshaked bool
	frames     *frameReader
	buf        []byte
	pending    []byte
	channel    atomic.Uint32 // channelBindOf the frame read last
}

func (c *streamConn) Read(p []byte) (int, error) {
	if !c.handshaked {
		if err := c.handshake(); err != nil {
			return 0, err
		}
	}
	for len(c.pending) == 0 {
		authed := c.authed.Load()
		deadline := time.Unix(0, c.deadline.Load())
		if authed {
			deadline = time.Now().Add(tcpIdleTimeout)
		}
		if err := c.Conn.SetReadDeadline(deadline); err != nil {
			return 0, err
		}
		if authed && !c.authed.Load() {
			continue // released meanwhile: its short deadline, not the idle one
		}
		frame, err := c.frames.next(c.buf)
		if err != nil {
			return 0, err
		}
		if c.checker.active() {
			c.checker.inspect(frame, c.Conn.RemoteAddr())
		}
		c.channel.Store(uint32(channelBindOf(frame)))
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
	ctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, c.deadline.Load()))
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	return nil
}
