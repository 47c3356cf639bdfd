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
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(s.trusted) == 0 {
		s.warnUntrustedProxy(host, r)
		return host
	}
	if !s.isTrusted(host) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if _, err := netip.ParseAddr(hop); err != nil {
			break // malformed: stop at the last address we can trust
		}
		host = hop
		if !s.isTrusted(hop) {
			break
		}
	}
	return host
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
