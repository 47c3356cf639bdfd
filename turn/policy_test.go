package turn

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// TestPolicyDeniesPeers: for each denied address, CreatePermission and
// ChannelBind are refused, and data sent there anyway (a Send indication
// and ChannelData on the refused channel) never arrives: a listener on
// 127.0.0.1, the address reachable on every machine, stays empty. The
// server listens on 127.0.0.3, so that 127.0.0.1 is loopback and not its
// relay address (see TestRelayToOwnAddress for that one).
func TestPolicyDeniesPeers(t *testing.T) {
	s, reg := startServerOn(t, ListenConfig{Addr: "127.0.0.3:0", UDPSockets: 2}, allowPeer2)
	victim := listenPeer(t, "127.0.0.1:0")
	control := listenPeer(t, "127.0.0.2:0")
	port := victim.LocalAddr().(*net.UDPAddr).Port
	cases := []struct {
		ip     string
		mapped bool // send the IPv4 address in its IPv4-mapped IPv6 form
	}{
		{"127.0.0.1", false},
		{"127.0.0.1", true}, // ::ffff:127.0.0.1 on the wire
		{"0.0.0.0", false},
		{"0.0.0.0", true},
		{"::1", false},
		{"10.0.0.1", false},
		{"169.254.169.254", false},
		{"169.254.169.254", true},
		{"224.0.0.1", false},
		{"fc00::1", false},
		{"64:ff9b::7f00:1", false},
	}
	user, pass := mint("mallory")
	c := newRawClient(t, s.UDPAddr(), user, pass)
	channel := uint16(0x4000)
	leak := []byte("this must not leave the relay")
	for _, tc := range cases {
		ip := net.ParseIP(tc.ip)
		peer := &net.UDPAddr{IP: ip, Port: port}
		if res := c.transact(stunCreatePermission, true, xorPeer(ip, port, tc.mapped)); !isError(res) {
			t.Errorf("CreatePermission %s (mapped %v) succeeded", tc.ip, tc.mapped)
		}
		if res := c.transact(stunChannelBind, true, channelNumber(channel), xorPeer(ip, port, tc.mapped)); !isError(res) {
			t.Errorf("ChannelBind %s (mapped %v) succeeded", tc.ip, tc.mapped)
		}
		c.send(peer, leak)
		c.channelData(channel, leak)
		channel++
	}
	// At least: the raw client retransmits when an answer is slow.
	if n := metricValue(t, reg, "khadga_turn_permissions_denied_total", nil); n < float64(2*len(cases)) {
		t.Errorf("permissions denied %v, want at least %d", n, 2*len(cases))
	}

	// The server handles one client's messages in order on one socket, so
	// once the control peer has its datagram, anything the server relayed
	// for the messages above would already be at the victim.
	ctl := control.LocalAddr().(*net.UDPAddr)
	if res := c.transact(stunCreatePermission, true, xorPeer(ctl.IP, ctl.Port, false)); isError(res) {
		t.Fatalf("CreatePermission for the allowed control peer: %v", res)
	}
	c.send(ctl, []byte("control"))
	if got, _ := readWithin(t, control); !bytes.Equal(got, []byte("control")) {
		t.Fatalf("control got %q", got)
	}
	nothingQueued(t, victim)
}

// TestRelayToOwnAddress: two allocations of one server reach each other
// with no allow range, although their relays are on the server's own
// address, as when two peers both relay through it (coturn allows this
// too). Every other port of that address stays closed in both
// directions: a UDP socket standing for any other service, and the TURN
// listener itself, get nothing from a relay, and what such a socket sends
// to a relay never reaches its client.
func TestRelayToOwnAddress(t *testing.T) {
	s, reg := startServer(t, nil) // relay address 127.0.0.1, no allow range
	alice := allocate(t, s, "alice")
	bob := allocate(t, s, "bob")
	aliceAt, bobAt := alice.LocalAddr(), bob.LocalAddr()

	// Each relay's first write creates its permission for the other's
	// address; a datagram that arrives before the receiver has its own
	// is dropped by pion, so exchange sends until one gets through.
	for _, w := range []struct {
		from net.PacketConn
		to   net.Addr
	}{{alice, bobAt}, {bob, aliceAt}} {
		if _, err := w.from.WriteTo([]byte("permission"), w.to); err != nil {
			t.Fatalf("relay write: %v", err)
		}
	}
	exchange(t, alice, bob, bobAt, []byte("alice to bob's relay"), nil)
	exchange(t, bob, alice, aliceAt, []byte("bob to alice's relay"), nil)

	service := listenPeer(t, "127.0.0.1:0") // the HTTP, metrics or admin port
	before := metricValue(t, reg, "khadga_turn_self_port_drops_total", nil)
	for _, to := range []net.Addr{service.LocalAddr(), s.UDPAddr()} {
		if _, err := alice.WriteTo([]byte("into the server's own port"), to); err != nil {
			t.Fatalf("write to %v: %v", to, err)
		}
	}
	// What a local socket sends to a relay is dropped too: alice reads
	// bob's datagram, sent after it, and never the socket's.
	leak := []byte("from the server's own port")
	if _, err := service.WriteTo(leak, aliceAt); err != nil {
		t.Fatal(err)
	}
	exchange(t, bob, alice, aliceAt, []byte("bob again"), leak)
	// Alice's writes went out before bob's last datagram came back
	// through the same server, so the service has them if it ever will.
	nothingQueued(t, service)
	if n := metricValue(t, reg, "khadga_turn_self_port_drops_total", nil); n < before+3 {
		t.Errorf("self port drops %v, want at least %v", n, before+3)
	}

	// A relay's port is open to the others while its allocation lives,
	// and closed once it is deleted (pion closes the socket before it
	// answers the Refresh with lifetime 0).
	u, p := mint("carol")
	carol := newRawClient(t, s.UDPAddr(), u, p)
	if !s.guard.permits(carol.relay) {
		t.Fatalf("carol's relay %v is not open to the other relays", carol.relay)
	}
	if res := carol.transact(stun.MethodRefresh, true, rawAttr(stun.AttrLifetime, []byte{0, 0, 0, 0})); isError(res) {
		t.Fatalf("Refresh(0): %v", res)
	}
	if s.guard.permits(carol.relay) {
		t.Fatalf("carol's relay port %d still open after her allocation was deleted", carol.relay.Port)
	}
}

// allocate is a UDP relay on s for user.
func allocate(t *testing.T, s *Server, user string) net.PacketConn {
	t.Helper()
	u, p := mint(user)
	relay, err := newClient(t, s.UDPAddr(), u, p).Allocate()
	if err != nil {
		t.Fatalf("Allocate %s: %v", user, err)
	}
	t.Cleanup(func() { relay.Close() })
	return relay
}

// exchange writes msg from one relay to the other until the other reads
// it, or fails after waitTimeout, or when the other reads never.
func exchange(t *testing.T, from, to net.PacketConn, toAddr net.Addr, msg, never []byte) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		if _, err := from.WriteTo(msg, toAddr); err != nil {
			t.Fatalf("relay write: %v", err)
		}
		if err := to.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		for {
			n, _, err := to.ReadFrom(buf)
			if err != nil {
				break
			}
			switch {
			case bytes.Equal(buf[:n], msg):
				return
			case never != nil && bytes.Equal(buf[:n], never):
				t.Fatalf("relay read %q", never)
			}
			// An extra copy of an earlier message: read on.
		}
	}
	t.Fatalf("%q never arrived between the relays", msg)
}

// TestPolicyDeniesSubnetBroadcast: the directed broadcast address of each
// IPv4 subnet the host sits on is one of its own: a relay socket may send
// to it (Go sets SO_BROADCAST on UDP sockets), and a packet to it reaches
// every host of the server's segment. Addresses computed only; nothing is
// sent.
func TestPolicyDeniesSubnetBroadcast(t *testing.T) {
	for _, c := range []struct {
		prefix, want string
	}{
		{"100.1.2.3/24", "100.1.2.255"},
		{"100.1.2.3/20", "100.1.15.255"},
		{"100.1.2.3/30", "100.1.2.3"},
	} {
		b, ok := broadcastOf(netip.MustParsePrefix(c.prefix))
		if !ok || b.String() != c.want {
			t.Errorf("broadcastOf(%s) = %v %v, want %s", c.prefix, b, ok, c.want)
		}
	}
	for _, p := range []string{"100.1.2.3/31", "100.1.2.3/32", "2001:db8::1/64"} {
		if b, ok := broadcastOf(netip.MustParsePrefix(p)); ok {
			t.Errorf("broadcastOf(%s) = %v, want none", p, b)
		}
	}
	p := newPeerPolicy(nil, nil, nil)
	p.setLocal(ownAddrs([]netip.Prefix{netip.MustParsePrefix("100.1.2.3/24")}))
	for ip, want := range map[string]bool{"100.1.2.255": false, "100.1.2.3": false, "100.1.2.4": true, "100.1.3.255": true} {
		if got := p.allowed(netip.MustParseAddr(ip)); got != want {
			t.Errorf("allowed(%s) = %v, want %v", ip, got, want)
		}
	}
}
