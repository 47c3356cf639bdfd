package turn

import (
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// builtinDenied are the peer ranges a public relay must never reach: a TURN
// client could otherwise use the server to talk to the host itself, the
// private network behind it, or the cloud metadata service.
var builtinDenied = mustPrefixes(
	"0.0.0.0/8",        // "this network", unspecified
	"10.0.0.0/8",       // RFC 1918
	"100.64.0.0/10",    // shared address space (carrier-grade NAT)
	"127.0.0.0/8",      // loopback
	"169.254.0.0/16",   // link-local, cloud metadata 169.254.169.254
	"172.16.0.0/12",    // RFC 1918
	"192.0.0.0/24",     // IETF protocol assignments
	"192.0.2.0/24",     // TEST-NET-1, documentation: nothing real lives there
	"192.168.0.0/16",   // RFC 1918
	"198.18.0.0/15",    // benchmarking
	"198.51.100.0/24",  // TEST-NET-2, documentation
	"203.0.113.0/24",   // TEST-NET-3, documentation
	"168.63.129.16/32", // Azure's platform address (DHCP, DNS, health probes, the wire server)
	"224.0.0.0/4",      // multicast
	"240.0.0.0/4",      // reserved, broadcast 255.255.255.255
	"::/128",           // unspecified
	"::1/128",          // loopback
	"64:ff9b::/96",     // NAT64, reaches IPv4 space through a translator
	"64:ff9b:1::/48",   // local-use NAT64 (RFC 8215)
	"2001:db8::/32",    // documentation
	"3fff::/20",        // documentation (RFC 9637)
	"fc00::/7",         // unique local
	"fe80::/10",        // link-local
	"ff00::/8",         // multicast
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// peerPolicy decides which peer addresses an allocation may reach. An
// explicit allow wins over every deny; then the server's relay addresses
// are allowed, at their relay ports only (see relayOnly); then the
// built-in ranges, the operator's deny ranges and the server's other own
// addresses are denied; anything else is allowed.
//
// The server's own addresses are its listen IPs, its relay addresses
// (relayAt: the public IP, which Config.PublicIPSTUN can change while it
// runs) and every address of the host's interfaces, whatever IP it listens
// on: a relay bound to one address still reaches services on the others.
// Interfaces change (DHCP, a VPN, a cloud's secondary IP), so the server
// re-reads them while it runs (setLocal). Reads of the sets are lock-free.
type peerPolicy struct {
	allow []netip.Prefix
	deny  []netip.Prefix

	mu     sync.Mutex         // serialises the setters below
	fixed  []netip.Addr       // listen addresses, set before serving
	relays []netip.Addr       // relayAt's
	held   map[netip.Addr]int // relay addresses given to open allocations -> how many
	local  []netip.Addr       // the last interface addresses

	// Read lock-free on every permission and relayed datagram.
	self atomic.Pointer[map[netip.Addr]bool]
	// relay are the own addresses where relay sockets listen: the relay
	// address given to clients (now, and to open allocations before a
	// change), and the address the sockets are bound to.
	relay atomic.Pointer[map[netip.Addr]bool]
}

func newPeerPolicy(allow, deny []netip.Prefix, self []netip.Addr) *peerPolicy {
	p := &peerPolicy{
		allow: allow,
		deny:  append(append([]netip.Prefix(nil), builtinDenied...), deny...),
		fixed: self,
	}
	p.setLocal(nil)
	return p
}

// relayAt sets the own addresses where the relay sockets can be reached,
// replacing the ones set before (the public IP changed). Two allocations
// of this server then reach each other (both peers relayed through it, as
// coturn allows), while every other port of these addresses stays denied
// by relayOnly where relayed packets are written: TURN permissions are
// per IP (RFC 8656 9), so the permission check cannot tell a relay port
// from the HTTP, metrics or admin port.
//
// An address replaced here stays a relay address, and one of the
// server's own, while an open allocation was given it (hold): it may
// still route to the server (a NAT keeps mappings, or the change was
// only the STUN server's view), and until the last such allocation
// closes, its TURN listener and other ports must stay out of reach.
func (p *peerPolicy) relayAt(ips ...netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.relays = p.relays[:0]
	for _, ip := range ips {
		ip = ip.Unmap().WithZone("")
		if ip.IsValid() && !ip.IsUnspecified() {
			p.relays = append(p.relays, ip)
		}
	}
	p.rebuildLocked()
}

// hold records that an open relay socket was given ip as its relay
// address, and release that it closed; see relayAt.
func (p *peerPolicy) hold(ip netip.Addr) {
	ip = ip.Unmap().WithZone("")
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil {
		p.held = make(map[netip.Addr]int)
	}
	if p.held[ip]++; p.held[ip] == 1 && !p.isRelay(ip) {
		p.rebuildLocked()
	}
}

func (p *peerPolicy) release(ip netip.Addr) {
	ip = ip.Unmap().WithZone("")
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held[ip]--; p.held[ip] > 0 {
		return
	}
	delete(p.held, ip)
	if !slices.Contains(p.relays, ip) {
		p.rebuildLocked()
	}
}

// isRelay reports whether ip (unmapped) is one of relayAt's addresses, or
// one an open allocation holds.
func (p *peerPolicy) isRelay(ip netip.Addr) bool { return (*p.relay.Load())[ip] }

// setLocal replaces the host's interface addresses in the self set and
// reports whether the set changed.
func (p *peerPolicy) setLocal(local []netip.Addr) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.local = local
	return p.rebuildLocked()
}

// rebuildLocked recomputes the relay and self sets, and reports whether
// the self set changed; p.mu is held.
func (p *peerPolicy) rebuildLocked() bool {
	relay := make(map[netip.Addr]bool, len(p.relays)+len(p.held))
	for _, ip := range p.relays {
		relay[ip] = true
	}
	for ip := range p.held {
		if ip.IsValid() && !ip.IsUnspecified() {
			relay[ip] = true
		}
	}
	if old := p.relay.Load(); old == nil || !maps.Equal(*old, relay) {
		p.relay.Store(&relay)
	}
	m := make(map[netip.Addr]bool, len(p.fixed)+len(relay)+len(p.local))
	for ip := range relay {
		m[ip] = true
	}
	for _, list := range [][]netip.Addr{p.fixed, p.local} {
		for _, ip := range list {
			m[ip.Unmap().WithZone("")] = true
		}
	}
	if old := p.self.Load(); old != nil && maps.Equal(*old, m) {
		return false
	}
	p.self.Store(&m)
	return true
}

// isSelf reports whether ip is one of the server's own addresses.
func (p *peerPolicy) isSelf(ip netip.Addr) bool {
	return (*p.self.Load())[ip.Unmap().WithZone("")]
}

// allowed reports whether ip may be a peer. IPv4-mapped IPv6 addresses are
// unmapped first, so ::ffff:127.0.0.1 is loopback.
func (p *peerPolicy) allowed(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap().WithZone("")
	if p.explicit(ip) || p.isRelay(ip) {
		return true
	}
	if p.isSelf(ip) {
		return false
	}
	for _, d := range p.deny {
		if d.Contains(ip) {
			return false
		}
	}
	return true
}

// explicit reports whether an operator's allow range covers ip (unmapped).
func (p *peerPolicy) explicit(ip netip.Addr) bool {
	for _, a := range p.allow {
		if a.Contains(ip) {
			return true
		}
	}
	return false
}

// relayOnly reports whether traffic between a relay socket and ip must be
// limited to the server's live relay ports: ip is one of the server's own
// addresses that no allow range opened. Only the relay addresses pass
// allowed for such an ip, so the check matters there; it holds for the
// others too, whatever reaches them.
func (p *peerPolicy) relayOnly(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	return p.isSelf(ip) && !p.explicit(ip)
}

// allowedIP is allowed for pion's net.IP.
func (p *peerPolicy) allowedIP(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	return ok && p.allowed(a)
}

// warnOpenings logs a warning for each allow range that opens a built-in
// denied range or one of the server's own addresses, so an operator sees
// what the allow list costs.
func (p *peerPolicy) warnOpenings(log *slog.Logger) {
	for _, a := range p.allow {
		for _, d := range builtinDenied {
			if a.Overlaps(d) {
				log.Warn("TURN peer allow opens a built-in denied range",
					slog.String("allow", a.String()), slog.String("denied", d.String()))
			}
		}
		for ip := range *p.self.Load() {
			if a.Contains(ip) {
				log.Warn("TURN peer allow opens one of the server's own addresses",
					slog.String("allow", a.String()), slog.String("address", ip.String()))
			}
		}
	}
}

// interfaceAddrs lists the addresses of the host's interfaces, and the
// broadcast address of each IPv4 one.
func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	prefixes := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			prefixes = append(prefixes, p)
		}
	}
	return ownAddrs(prefixes), nil
}

// ownAddrs is the addresses of interfaces with these prefixes, and the
// directed broadcast address of each IPv4 subnet: Go's UDP sockets, the
// relay's too, may send to broadcast addresses, and a packet to one
// reaches every host of the server's segment.
func ownAddrs(prefixes []netip.Prefix) []netip.Addr {
	out := make([]netip.Addr, 0, 2*len(prefixes))
	for _, p := range prefixes {
		out = append(out, p.Addr())
		if b, ok := broadcastOf(p); ok {
			out = append(out, b)
		}
	}
	return out
}

// broadcastOf returns the directed broadcast address of an IPv4 subnet
// (its host bits all ones); none for /31 and /32, which have none.
func broadcastOf(p netip.Prefix) (netip.Addr, bool) {
	if !p.Addr().Unmap().Is4() || p.Bits() >= 31 || p.Bits() < 0 {
		return netip.Addr{}, false
	}
	a := p.Addr().Unmap().As4()
	bits := p.Bits()
	for i := range a {
		for b := range 8 {
			if i*8+b >= bits {
				a[i] |= 0x80 >> b
			}
		}
	}
	return netip.AddrFrom4(a), true
}
