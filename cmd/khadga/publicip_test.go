package main

import (
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/khadga/khadga/internal/fakestun"
)

// TestTurnPublicIPAuto runs `khadga turn --turn-public-ip auto` against a
// STUN server the test runs on 127.0.0.1 (reporting a documentation
// address as the public IP, as there is none here): the relay address is
// the one reported, follows it when it changes, and new allocations get
// the new one.
func TestTurnPublicIPAuto(t *testing.T) {
	stun := fakestun.Start(t, "203.0.113.7")
	dir := t.TempDir()
	_, logs := startKhadga(t, dir, []string{"KHADGA_TURN_SECRET=" + firstTURNSecret},
		"turn", "--turn-listen", "127.0.0.1:0", "--turn-sockets", "1",
		"--turn-public-ip", "auto", "--turn-public-ip-stun", stun.Addr(), "--turn-public-ip-interval", "1s")
	m := logs.waitFor(t, regexp.MustCompile(`TURN server listening.* udp=(127\.0\.0\.1:\d+).* relay_ip=(\S+)`), 1)
	server, relayIP := m[1], m[2]
	if relayIP != "203.0.113.7" {
		t.Fatalf("relay_ip=%s, want the STUN server's 203.0.113.7", relayIP)
	}
	_, relay, err := allocate(t, server, firstTURNSecret)
	if err != nil || relay.LocalAddr().(*net.UDPAddr).IP.String() != "203.0.113.7" {
		t.Fatalf("allocation: %v, relayed address %v", err, relay.LocalAddr())
	}
	stun.Set("203.0.113.8")
	logs.waitFor(t, regexp.MustCompile(`TURN public IP changed.* old=203\.0\.113\.7 new=203\.0\.113\.8`), 1)
	if _, relay, err = allocate(t, server, firstTURNSecret); err != nil || relay.LocalAddr().(*net.UDPAddr).IP.String() != "203.0.113.8" {
		t.Fatalf("allocation after the change: %v, relayed address %v", err, relay.LocalAddr())
	}
}

// TestTurnPublicIPAutoFlags: auto needs a STUN server, and a STUN server
// needs auto.
func TestTurnPublicIPAutoFlags(t *testing.T) {
	t.Setenv("KHADGA_TURN_SECRET", firstTURNSecret)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--turn-public-ip", "auto"}, "needs --turn-public-ip-stun"},
		{[]string{"--turn-public-ip-stun", "stun.example.org:3478"}, "only with --turn-public-ip auto"},
		{[]string{"--turn-public-ip", "auto", "--turn-public-ip-stun", "no-port"}, "want host:port"},
	} {
		if _, err := loadTurn(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error with %q", c.args, err, c.want)
		}
	}
}
