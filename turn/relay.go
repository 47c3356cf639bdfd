package turn

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"

	pionturn "github.com/pion/turn/v4"
)

// countingRelay wraps a RelayAddressGenerator so that every relay socket
// counts the bytes and packets it carries, registers its port while it is
// open, and talks to the server's own addresses only at relay ports.
type countingRelay struct {
	pionturn.RelayAddressGenerator
	relayIP func() netip.Addr // the address to give out now
	metrics *metrics
	guard   *selfGuard
	bw      *bandwidth // nil: no cap
	buffer  int        // socket buffer size, <= 0: the OS default
}

func (r *countingRelay) AllocatePacketConn(network string, port int) (net.PacketConn, net.Addr, error) {
	conn, addr, err := r.RelayAddressGenerator.AllocatePacketConn(network, port)
	if err != nil {
		return nil, nil, err
	}
	rc := &relayConn{PacketConn: conn, metrics: r.metrics, guard: r.guard, bw: r.bw}
	if ua, ok := addr.(*net.UDPAddr); ok && r.relayIP != nil {
		rc.given = r.relayIP()
		addr = &net.UDPAddr{IP: net.IP(rc.given.AsSlice()), Port: ua.Port}
		r.guard.policy.hold(rc.given)
	}
	setBuffers(conn, r.buffer)
	if ua, ok := conn.LocalAddr().(*net.UDPAddr); ok {
		rc.port = uint16(ua.Port)
		r.guard.open(rc)
		r.bw.opened(rc)
	}
	return rc, addr, nil
}

// selfGuard keeps relayed traffic away from the server's own ports. Peers
// on the server's own addresses are allowed only when the other end is a
// relay socket of this server, open at the time: that is how two
// allocations of one server reach each other, and it never reaches a
// listener, the HTTP, metrics or admin port, or any other socket.
type selfGuard struct {
	policy  *peerPolicy
	metrics *metrics

	mu    sync.RWMutex
	ports map[uint16]*relayConn // the open relay sockets, by port
}

func newSelfGuard(p *peerPolicy, m *metrics) *selfGuard {
	return &selfGuard{policy: p, metrics: m, ports: make(map[uint16]*relayConn)}
}

func (g *selfGuard) open(c *relayConn) {
	g.mu.Lock()
	g.ports[c.port] = c
	g.mu.Unlock()
}

func (g *selfGuard) closed(c *relayConn) {
	g.mu.Lock()
	if g.ports[c.port] == c {
		delete(g.ports, c.port)
	}
	g.mu.Unlock()
}

// conn returns the open relay socket at relay's port, nil if none: pion's
// events name an allocation's relay address, never its socket.
func (g *selfGuard) conn(relay net.Addr) *relayConn {
	ua, ok := relay.(*net.UDPAddr)
	if !ok || ua.Port < 1 || ua.Port > 65535 {
		return nil
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.ports[uint16(ua.Port)]
}

// permits reports whether a relay socket may exchange datagrams with addr.
// The common case, a peer that is not one of the server's addresses, costs
// two map lookups.
func (g *selfGuard) permits(addr net.Addr) bool {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ua.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	if !g.policy.relayOnly(ip) {
		return true
	}
	if !g.policy.isRelay(ip) || ua.Port < 1 || ua.Port > 65535 {
		return false
	}
	g.mu.RLock()
	open := g.ports[uint16(ua.Port)] != nil
	g.mu.RUnlock()
	return open
}

// relayConn is a relay socket that counts what it carries and keeps to the
// selfGuard and its user's bandwidth. Reads are datagrams arriving from
// peers; writes are datagrams sent to peers.
type relayConn struct {
	net.PacketConn
	metrics *metrics
	guard   *selfGuard
	bw      *bandwidth
	port    uint16
	given   netip.Addr // the relay address the allocation was given, held in the policy
	peers   relayPeers // whom the allocation relays from

	budget atomic.Pointer[budget] // the user's, once the allocation names it; nil: no cap
	user   string                 // whose budget; written under bw.mu

	closeOnce sync.Once
}

// limits returns the socket's budget's limiters, nil when it has none.
func (c *relayConn) limits() (toPeer, fromPeer *rate.Limiter) {
	if bg := c.budget.Load(); bg != nil {
		return bg.toPeer, bg.fromPeer
	}
	return nil, nil
}

// ReadFrom drops datagrams from the server's own addresses that do not
// come from a relay socket (a local process sending from the server's
// address), so that they never reach the client as if from a peer, and
// datagrams over the user's bandwidth.
//
// Only datagrams the allocation relays are charged to the user and
// counted: a relay address is in every ICE candidate, and anyone who
// learns it could otherwise spend the user's budget with junk and make the
// real peers' datagrams drop. The others go on to pion uncharged, which
// drops them (RFC 8656 10.3): pion stays the one that decides, so a
// permission it has just installed, a moment before its event reaches
// relayPeers, still relays.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		if !c.guard.permits(addr) {
			c.metrics.selfDropped.Inc()
			continue
		}
		if !c.peers.relays(addr) {
			return n, addr, nil
		}
		if _, from := c.limits(); !allow(from, n) {
			c.metrics.overBandwidthFromPeer.Inc()
			continue
		}
		c.metrics.bytesFromPeer.Add(float64(n))
		c.metrics.packetsFromPeer.Inc()
		return n, addr, nil
	}
}

// WriteTo sends to a peer. A datagram for a port of the server's own
// address that is not an open relay socket is dropped silently, as a
// firewall would (an error would only make pion log every such packet),
// and so is one over the user's bandwidth.
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if !c.guard.permits(addr) {
		c.metrics.selfDropped.Inc()
		return len(p), nil
	}
	if to, _ := c.limits(); !allow(to, len(p)) {
		c.metrics.overBandwidthToPeer.Inc()
		return len(p), nil
	}
	n, err := c.PacketConn.WriteTo(p, addr)
	if err == nil {
		c.metrics.bytesToPeer.Add(float64(n))
		c.metrics.packetsToPeer.Inc()
	}
	return n, err
}

// Close closes the socket and forgets its port.
func (c *relayConn) Close() error {
	c.closeOnce.Do(func() {
		if c.port != 0 {
			c.guard.closed(c)
		}
		if c.given.IsValid() {
			c.guard.policy.release(c.given)
		}
		c.bw.closed(c)
	})
	return c.PacketConn.Close()
}

// relayPeers are the peers an allocation relays datagrams from (RFC 8656
// 10.3): the IPs it holds a permission for, and the transport addresses
// it has bound a channel to (pion relays a bound channel's datagrams even
// after its permission lapsed). Pion's permission and channel events keep
// them; the relay socket reads them for every datagram.
type relayPeers struct {
	mu    sync.RWMutex
	perms map[netip.Addr]struct{}
	chans map[netip.AddrPort]struct{}
}

// relays reports whether the allocation relays datagrams from addr.
func (p *relayPeers) relays(addr net.Addr) bool {
	ap, ok := udpAddrPort(addr)
	if !ok {
		return false
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if _, ok := p.perms[ap.Addr()]; ok {
		return true
	}
	_, ok = p.chans[ap]
	return ok
}

func (p *relayPeers) permit(ip net.IP, on bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return
	}
	a = a.Unmap()
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		if p.perms == nil {
			p.perms = make(map[netip.Addr]struct{})
		}
		p.perms[a] = struct{}{}
	} else {
		delete(p.perms, a)
	}
}

func (p *relayPeers) bind(peer net.Addr, on bool) {
	ap, ok := udpAddrPort(peer)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		if p.chans == nil {
			p.chans = make(map[netip.AddrPort]struct{})
		}
		p.chans[ap] = struct{}{}
	} else {
		delete(p.chans, ap)
	}
}

// udpAddrPort is addr's address and port, the address unmapped.
func udpAddrPort(addr net.Addr) (netip.AddrPort, bool) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ip, ok := netip.AddrFromSlice(ua.IP)
	if !ok || ua.Port < 0 || ua.Port > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(ua.Port)), true
}

// setBuffers asks for size-byte receive and send buffers on a UDP socket.
// The kernel may grant less; that only costs burst tolerance, so errors
// are ignored.
func setBuffers(c net.PacketConn, size int) {
	uc, ok := c.(*net.UDPConn)
	if !ok || size <= 0 {
		return
	}
	_ = uc.SetReadBuffer(size)
	_ = uc.SetWriteBuffer(size)
}
