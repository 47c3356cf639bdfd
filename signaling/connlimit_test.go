package signaling

import (
	"net"
	"net/netip"
	"testing"
)

// TestConnLimitKeys: which addresses Config.MaxConnsPerAddr counts, and
// under which key. Public addresses count, each IPv4 address alone and
// IPv6 by /56 (a home's or a host's); loopback, private and link-local
// addresses (a network's own hosts, and an untrusted reverse proxy, behind
// which all clients would share one budget) and trusted proxies do not.
func TestConnLimitKeys(t *testing.T) {
	s := &Server{trusted: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/28")}}
	l := newConnLimit(1, s.connsExempt, nil, nil)
	for addr, want := range map[string]string{
		"198.51.100.7:1000":          "198.51.100.7/32",
		"[::ffff:198.51.100.7]:1000": "198.51.100.7/32",
		"[2001:db8:1:2ff:1::5]:1000": "2001:db8:1:200::/56",
		"[2001:db8:1:2aa::9]:1000":   "2001:db8:1:200::/56",
		"203.0.113.20:1000":          "203.0.113.20/32",
		"203.0.113.5:1000":           "", // a trusted proxy
		"127.0.0.1:1000":             "",
		"[::1]:1000":                 "",
		"10.1.2.3:1000":              "",
		"192.168.1.9:1000":           "",
		"172.16.0.1:1000":            "",
		"[fd00::1]:1000":             "",
		"169.254.1.1:1000":           "",
		"[fe80::1%eth0]:1000":        "",
	} {
		ap := netip.MustParseAddrPort(addr)
		key, counted := l.key(fakeConn{remote: net.TCPAddrFromAddrPort(ap)})
		if got := map[bool]string{true: key.String(), false: ""}[counted]; got != want {
			t.Errorf("%s counts under %q, want %q", addr, got, want)
		}
	}
}

// fakeConn is a net.Conn with a remote address and nothing else: key reads
// only that.
type fakeConn struct {
	net.Conn
	remote net.Addr
}

func (c fakeConn) RemoteAddr() net.Addr { return c.remote }
