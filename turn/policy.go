package turn

import (
	"log/slog"
	"net"
	"net/netip"
)

// builtinDenied are the peer ranges a public relay must never reach: a TURN
// client could otherwise use the server to talk to the host itself, the
// private network behind it, or the cloud metadata service.
var builtinDenied = mustPrefixes(
	"0.0.0.0/8",      // "this network", unspecified
	"10.0.0.0/8",     // RFC 1918
	"100.64.0.0/10",  // shared address space (carrier-grade NAT)
	"127.0.0.0/8",    // loopback
	"169.254.0.0/16", // link-local, cloud metadata 169.254.169.254
	"172.16.0.0/12",  // RFC 1918
	"192.0.0.0/24",   // IETF protocol assignments
	"192.168.0.0/16", // RFC 1918
	"198.18.0.0/15",  // benchmarking
	"224.0.0.0/4",    // multicast
	"240.0.0.0/4",    // reserved, broadcast 255.255.255.255
	"::/128",         // unspecified
	"::1/128",        // loopback
	"64:ff9b::/96",   // NAT64, reaches IPv4 space through a translator
	"64:ff9b:1::/48", // local-use NAT64 (RFC 8215)
	"fc00::/7",       // unique local
	"fe80::/10",      // link-local
	"ff00::/8",       // multicast
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// peerPolicy decides which peer addresses an allocation may reach. An
// explicit allow wins over every deny; then the built-in ranges, the
// operator's deny ranges and the server's own addresses are denied;
// anything else is allowed.
type peerPolicy struct {
	allow []netip.Prefix
	deny  []netip.Prefix
	self  map[netip.Addr]bool
}

func newPeerPolicy(allow, deny []netip.Prefix, self []netip.Addr) *peerPolicy {
	p := &peerPolicy{
		allow: allow,
		deny:  append(append([]netip.Prefix(nil), builtinDenied...), deny...),
		self:  make(map[netip.Addr]bool),
	}
	for _, ip := range self {
		p.self[ip.Unmap().WithZone("")] = true
	}
	return p
}

// allowed reports whether ip may be a peer. IPv4-mapped IPv6 addresses are
// unmapped first, so ::ffff:127.0.0.1 is loopback.
func (p *peerPolicy) allowed(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, a := range p.allow {
		if a.Contains(ip) {
			return true
		}
	}
	if p.self[ip] {
		return false
	}
	for _, d := range p.deny {
		if d.Contains(ip) {
			return false
		}
	}
	return true
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
		for ip := range p.self {
			if a.Contains(ip) {
				log.Warn("TURN peer allow opens one of the server's own addresses",
					slog.String("allow", a.String()), slog.String("address", ip.String()))
			}
		}
	}
}
