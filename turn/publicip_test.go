package turn

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/fakestun"
)

type ipCheck struct {
	ip  netip.Addr
	err error
}

// waitCheck waits for a public IP check that satisfies ok.
func waitCheck(t *testing.T, checks <-chan ipCheck, what string, ok func(ipCheck) bool) ipCheck {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case c := <-checks:
			if ok(c) {
				return c
			}
		case <-deadline:
			t.Fatalf("no public IP check gave %s", what)
		}
	}
}

// TestPublicIPFromSTUN: with PublicIPSTUN the relay address is what a
// STUN server sees; a change of it moves the relay address of new
// allocations and of the ICE servers, while the allocations opened before
// keep theirs and keep relaying; a failed or unusable answer keeps the
// address in use.
func TestPublicIPFromSTUN(t *testing.T) {
	f := fakestun.Start(t, "203.0.113.7")
	checks := make(chan ipCheck, 64)
	s, _ := startServer(t, func(c *Config) {
		c.PublicIPSTUN, c.PublicIPEvery = f.Addr(), time.Second
		c.AllowPeers = []string{"127.0.0.0/8"}
		c.onPublicIP = func(ip netip.Addr, err error) {
			select {
			case checks <- ipCheck{ip, err}:
			default:
			}
		}
	})
	if got := s.RelayIP().String(); got != "203.0.113.7" {
		t.Fatalf("relay IP %s, want the STUN server's answer 203.0.113.7", got)
	}
	ice, _ := s.ICEServers("ann")
	if !strings.HasPrefix(ice[0].URLs[0], "stun:203.0.113.7:") {
		t.Fatalf("ICE servers %v do not carry the public IP", ice)
	}
	user, pass := mint("ann")
	old, err := newClient(t, s.UDPAddr(), user, pass).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if ip := old.LocalAddr().(*net.UDPAddr).IP.String(); ip != "203.0.113.7" {
		t.Fatalf("relayed address %s, want 203.0.113.7", ip)
	}

	f.Set("203.0.113.8")
	waitCheck(t, checks, "the new address", func(c ipCheck) bool { return c.ip.String() == "203.0.113.8" })
	if got := s.RelayIP().String(); got != "203.0.113.8" {
		t.Fatalf("after the change the relay IP is %s", got)
	}
	relay, err := newClient(t, s.UDPAddr(), user, pass).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if ip := relay.LocalAddr().(*net.UDPAddr).IP.String(); ip != "203.0.113.8" {
		t.Fatalf("a new allocation's relayed address is %s, want 203.0.113.8", ip)
	}
	if ice, _ := s.ICEServers("ann"); !strings.HasPrefix(ice[0].URLs[0], "stun:203.0.113.8:") {
		t.Fatalf("ICE servers %v after the change", ice)
	}
	if n := s.AllocationCount(); n != 2 {
		t.Fatalf("%d allocations, want the old one still open and the new one", n)
	}
	oldIP := netip.MustParseAddr("203.0.113.7")
	if !s.policy.isRelay(oldIP) || !s.policy.relayOnly(oldIP) {
		t.Fatal("the old relay IP, still given to an open allocation, is no longer port-restricted")
	}
	// The old allocation still relays (its address was the NAT's; the
	// sockets are the same).
	peer := listenPeer(t, "127.0.0.2:0")
	if _, err := old.WriteTo([]byte("still relaying after the change"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if got, _ := readWithin(t, peer); string(got) != "still relaying after the change" {
		t.Fatalf("peer got %q", got)
	}

	old.Close()
	waitFor(t, "the old relay IP to leave the relay set", func() bool { return !s.policy.isRelay(oldIP) })

	f.Silent(true)
	waitCheck(t, checks, "a failure for a silent server", func(c ipCheck) bool { return c.err != nil })
	f.Silent(false)
	f.Set("127.0.0.1")
	waitCheck(t, checks, "a refusal of a loopback answer", func(c ipCheck) bool { return errors.Is(c.err, errNoPublicIP) })
	if got := s.RelayIP().String(); got != "203.0.113.8" {
		t.Fatalf("a failed check moved the relay IP to %s", got)
	}
}

// TestPublicIPSTUNDownAtStart: a STUN server that does not answer at
// start does not stop the server; it relays on the listen address until
// an answer comes.
func TestPublicIPSTUNDownAtStart(t *testing.T) {
	f := fakestun.Start(t, "203.0.113.9")
	f.Silent(true)
	checks := make(chan ipCheck, 64)
	start := time.Now()
	s, _ := startServer(t, func(c *Config) {
		c.PublicIPSTUN, c.PublicIPEvery = f.Addr(), time.Second
		c.onPublicIP = func(ip netip.Addr, err error) {
			select {
			case checks <- ipCheck{ip, err}:
			default:
			}
		}
	})
	if got := s.RelayIP().String(); got != "127.0.0.1" {
		t.Fatalf("relay IP %s, want the listen address", got)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("New waited %v for a silent STUN server", d)
	}
	f.Silent(false)
	waitCheck(t, checks, "the address once the server answers", func(c ipCheck) bool { return c.ip.String() == "203.0.113.9" })
	if got := s.RelayIP().String(); got != "203.0.113.9" {
		t.Fatalf("relay IP %s once the STUN server answers", got)
	}
	if err := (Config{Secrets: [][]byte{testSecret}, PublicIP: "203.0.113.1", PublicIPSTUN: "x"}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "exclude each other") || !strings.Contains(err.Error(), "host:port") {
		t.Fatalf("Validate: %v", err)
	}
}
