package signaling

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// clientAddr is the client's IP: the key for per-address login limits, the
// address in the audit log, and what the loopback-only /metrics checks.
// Behind a reverse proxy listed in Config.TrustedProxies it is taken from
// X-Forwarded-For: the rightmost address that is not itself a trusted proxy,
// so a client cannot spoof it by sending the header itself.
func (s *Server) clientAddr(r *http.Request) string {
	addr, _ := s.clientAddrKnown(r)
	return addr
}

// clientAddrKnown is clientAddr, and whether the address is the client's:
// false when a trusted proxy's X-Forwarded-For has a hop it cannot read
// (such as "unknown") where the client should be, and addr is then the
// last proxy's. (A request from a trusted address without the header is
// that address's own: a local scraper, say.) That is the
// key the login limits share for such requests, but it must never pass
// for the client's own address (a proxy on loopback is not a loopback
// client: /metrics).
func (s *Server) clientAddrKnown(r *http.Request) (addr string, known bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(s.trusted) == 0 {
		s.warnUntrustedProxy(host, r)
		return host, true
	}
	if !s.isTrusted(host) {
		return host, true
	}
	xff := r.Header.Values("X-Forwarded-For")
	if len(xff) == 0 {
		return host, true
	}
	hops := strings.Split(strings.Join(xff, ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := parseHop(hops[i])
		if !ok {
			return host, false // stop at the last address we can trust
		}
		host = hop
		if !s.isTrusted(hop) {
			return host, true
		}
	}
	return host, true // every hop in a trusted range: the leftmost is the client
}

// parseHop reads one X-Forwarded-For entry: an IP, or an IP with a port,
// or a bracketed IPv6 address, as proxies write them.
func parseHop(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().String(), true
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		return a.String(), true
	}
	return "", false
}

func (s *Server) isTrusted(ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range s.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// warnUntrustedProxy logs once, when requests come from a loopback or
// private address and no proxy is trusted: that is what a reverse proxy on
// the same host or network looks like, and then every client shares its
// address, so that one client's failed logins slow down or block the
// others (docs/deploy.md, "Behind a reverse proxy").
func (s *Server) warnUntrustedProxy(host string, r *http.Request) {
	if s.proxyWarned.Load() {
		return
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !(a.Unmap().IsLoopback() || a.Unmap().IsPrivate()) || s.proxyWarned.Swap(true) {
		return
	}
	s.log.Warn("requests come from a loopback or private address and no reverse proxy is trusted: "+
		"if khadga runs behind a proxy, set --trust-proxy to its address and have it send X-Forwarded-For, "+
		"or every client shares one address for the login and registration limits",
		slog.String("addr", host), slog.Bool("x_forwarded_for", r.Header.Get("X-Forwarded-For") != ""))
}
