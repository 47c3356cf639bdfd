package turn

import (
	"bytes"
	"net"
	"testing"
)

// TestPolicyDeniesPeers: for each denied address, CreatePermission and
// ChannelBind are refused, and data sent there anyway (a Send indication
// and ChannelData on the refused channel) never arrives: a listener on
// 127.0.0.1, the address reachable on every machine, stays empty.
func TestPolicyDeniesPeers(t *testing.T) {
	s, reg := startServer(t, allowPeer2)
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
