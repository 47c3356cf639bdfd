package signaling

import (
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
	if len(s.trusted) == 0 || !s.isTrusted(host) {
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
