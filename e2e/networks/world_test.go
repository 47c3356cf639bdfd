package networks_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/khadga/khadga/internal/netlab"
)

// The lab's addresses, all from the documentation ranges. The public
// segment is 203.0.113.0/26: the server at .1, router WAN ends and hosts
// that sit on the public segment from .32 on. The server is started with
// --turn-allow-peer for 203.0.113.32/27 only, the peers' public range, so
// that its own address is never allowed by hand. Each site's private side
// is a /28 of 198.51.100.0/24.
const (
	serverIP    = "203.0.113.1"
	publicCIDR  = "/26"
	publicRange = "203.0.113.32/27"
	httpAddr    = serverIP + ":8080"
	serverURL   = "http://" + httpAddr
)

// NAT kinds of a site's router.
type natKind int

const (
	// onPublic: no router; the host sits on the public segment.
	onPublic natKind = iota
	// eim: nftables masquerade, which keeps the source port, so the
	// mapping is endpoint independent: STUN's answer is the address
	// other peers can reach after a hole punch.
	eim
	// symmetric: masquerade random,fully-random, a new random port for
	// every destination, so the address STUN reports is of no use to a
	// peer.
	symmetric
)

// world is one lab network: a public namespace with the khadga server,
// and sites, each a host namespace, behind its own router namespace or
// on the public segment.
//
// t is the test that made the world: building it (addSite, addRouter,
// startServer) fails that test. What may run in a subtest (setNAT, move)
// takes the caller's t, since a subtest must not call FailNow on its
// parent.
type world struct {
	t     *testing.T
	lab   *netlab.Lab
	pub   *netlab.Netns
	sites map[string]*site
	n     int // sites made, for addresses
}

// site is one peer's place: its host namespace, and its router (nil on
// the public segment).
type site struct {
	name   string
	host   *netlab.Netns
	router *netlab.Netns
	nat    natKind
	wanIP  string // the router's public address, or the host's
	hostIP string
}

// newWorld makes the public segment: a bridge in the public namespace,
// holding the server's address.
func newWorld(t *testing.T, name string) *world {
	t.Helper()
	w := &world{t: t, lab: netlab.New(t, name), sites: map[string]*site{}}
	w.pub = w.lab.Netns(t, "pub")
	w.pub.Bridge(t, "br0", serverIP+publicCIDR)
	return w
}

// addSite adds a site: with a router doing nat, or on the public
// segment. extra is more nftables rules for the router (a filter table).
func (w *world) addSite(name string, nat natKind, extra string) *site {
	w.t.Helper()
	i := w.n
	w.n++
	s := &site{name: name, nat: nat, host: w.lab.Netns(w.t, name)}
	w.sites[name] = s
	port := fmt.Sprintf("p%d", i) // the bridge port in the public namespace
	s.wanIP = fmt.Sprintf("203.0.113.%d", 33+i)
	if nat == onPublic {
		s.hostIP = s.wanIP
		w.lab.Link(w.t, s.host, "eth0", s.hostIP+publicCIDR, w.pub, port, "")
		w.pub.IP(w.t, "link", "set", port, "master", "br0")
		return s
	}
	s.router = w.lab.Netns(w.t, "r"+name)
	w.lab.Link(w.t, s.router, "wan", s.wanIP+publicCIDR, w.pub, port, "")
	w.pub.IP(w.t, "link", "set", port, "master", "br0")
	w.attach(w.t, s, 16*i)
	s.router.Forward(w.t)
	w.setNAT(w.t, s, nat, extra)
	return s
}

// addRouter adds a router on the public segment with an empty private
// side, for a host to move to (move).
func (w *world) addRouter(name string, nat natKind) *site {
	w.t.Helper()
	i := w.n
	w.n++
	s := &site{name: name, nat: nat, router: w.lab.Netns(w.t, "r"+name)}
	port := fmt.Sprintf("p%d", i)
	s.wanIP = fmt.Sprintf("203.0.113.%d", 33+i)
	w.lab.Link(w.t, s.router, "wan", s.wanIP+publicCIDR, w.pub, port, "")
	w.pub.IP(w.t, "link", "set", port, "master", "br0")
	s.router.Forward(w.t)
	w.setNAT(w.t, s, nat, "")
	return s
}

// move takes the host of from off its router (its interface and address
// go away) and puts it behind to's router, on to's private side.
func (w *world) move(t *testing.T, from, to *site) {
	t.Helper()
	from.host.IP(t, "link", "del", "eth0") // the veth pair goes with it
	i := 0
	for j, s := range []string{"a", "b", "c", "d", "e", "f"} {
		if s == to.name {
			i = j
		}
	}
	to.host = from.host
	w.attach(t, to, 16*i)
	from.hostIP, from.router, from.wanIP = to.hostIP, to.router, to.wanIP
}

// attach links the site's host to its router on the private /28 that
// starts at 198.51.100.base, and routes the host through it. The host has
// no other route: nothing it sends leaves the lab.
func (w *world) attach(t *testing.T, s *site, base int) {
	t.Helper()
	gw := fmt.Sprintf("198.51.100.%d", base+1)
	s.hostIP = fmt.Sprintf("198.51.100.%d", base+2)
	w.lab.Link(t, s.host, "eth0", s.hostIP+"/28", s.router, "lan", gw+"/28")
	s.host.IP(t, "route", "add", "default", "via", gw)
}

// setNAT replaces the router's rules: NAT of the given kind out of "wan",
// a firewall that drops what arrives for the router itself unasked, as
// home routers do, plus extra (more tables).
//
// The firewall matters for hole punching: a peer's first check that
// reaches the router before its own host has sent anything would
// otherwise be taken in (and answered with ICMP), and the kernel would
// keep that flow in conntrack, so the host's own packets to the peer
// would then leave on another port. Dropped in the input hook, the flow
// is never confirmed and leaves no trace.
func (w *world) setNAT(t *testing.T, s *site, nat natKind, extra string) {
	t.Helper()
	s.router.FlushNft(t)
	how := "masquerade"
	if nat == symmetric {
		how = "masquerade random,fully-random"
	}
	s.router.Nft(t, fmt.Sprintf(`table ip nat {
	chain post { type nat hook postrouting priority srcnat; oifname "wan" %s; }
}
table inet fw {
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		iifname { "lo", "lan" } accept
	}
}
%s`, how, extra))
	s.nat = nat
}

// dropUDP is a router filter that drops every UDP datagram it would
// forward, both ways: the site can use TCP only.
const dropUDP = `table inet filter {
	chain forward { type filter hook forward priority filter; meta l4proto udp drop; }
}`

// dropUDPAndTURNS also drops TCP to the TURNS port 5349, so that TURN
// over TCP on 3478 is the only relay left. With both TCP and TLS open,
// either may carry the call: ICE nominates the best pair that has
// succeeded once its wait for relay pairs (2 s) is over, and under load
// the TLS pair sometimes succeeds before the TCP one.
const dropUDPAndTURNS = `table inet filter {
	chain forward { type filter hook forward priority filter; meta l4proto udp drop; tcp dport 5349 drop; }
}`

// dropUDPAndTURNTCP also drops TCP to the TURN port 3478, so that only
// TURNS (TLS on 5349) and the signaling server's HTTP port get through.
const dropUDPAndTURNTCP = `table inet filter {
	chain forward { type filter hook forward priority filter; meta l4proto udp drop; tcp dport 3478 drop; }
}`

// onlyHTTP lets through nothing but TCP to the signaling server's HTTP
// port: no UDP, no TURN over TCP or TLS. No call can work.
const onlyHTTP = `table inet filter {
	chain forward { type filter hook forward priority filter; meta l4proto udp drop; tcp dport { 3478, 5349 } drop; }
}`

// lossy drops 5% of what the router forwards, in both directions, at
// random.
const lossy = `table inet filter {
	chain forward { type filter hook forward priority filter; numgen random mod 100 < 5 drop; }
}`

// env is the process environment for programs in the lab: no proxy
// settings from the host (they would send traffic out of the lab).
func labEnv(extra ...string) []string {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	return append(env, extra...)
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, strings.ToLower(s))
}
