package turn

import (
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestUserBandwidth: one user's allocations share a budget per direction;
// past the burst, datagrams are dropped and counted, both ways, while
// another user's allocation relays everything.
func TestUserBandwidth(t *testing.T) {
	const capacity = maxDatagram // the smallest burst: 65,535 bytes at once
	s, reg := startServer(t, func(c *Config) {
		c.AllowPeers = []string{"127.0.0.2/32"}
		c.UserBandwidth = 1024 // 1 KiB/s after the burst
	})
	alloc := func(user string) net.PacketConn {
		u, p := mint(user)
		relay, err := newClient(t, s.UDPAddr(), u, p).Allocate()
		if err != nil {
			t.Fatalf("Allocate: %v", err)
		}
		t.Cleanup(func() { relay.Close() })
		return relay
	}
	first, second, other := alloc("mallory"), alloc("mallory"), alloc("olive")
	peer := listenPeer(t, "127.0.0.2:0")

	const size, count = 1000, 100 // 100 KB, more than the burst
	payload := make([]byte, size)
	start := time.Now()
	for i := range count {
		relay := first
		if i%2 == 1 {
			relay = second // the same user: the same budget
		}
		if _, err := relay.WriteTo(payload, peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	relayed, dropped := settle(t, reg, "to_peer", count)
	// What passes: the burst, and 1 KiB for every second the test took.
	most := (capacity + int(time.Since(start).Seconds()+1)*1024) / size
	if relayed < capacity/size || relayed > most || dropped == 0 {
		t.Fatalf("relayed %d and dropped %d of %d datagrams of %d bytes; want about %d relayed", relayed, dropped, count, size, capacity/size)
	}

	// From the peer to mallory: the other direction has a budget of its
	// own, full until now.
	for range count {
		if _, err := peer.WriteTo(payload, first.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	relayedIn, droppedIn := settle(t, reg, "from_peer", count)
	if relayedIn < capacity/size || relayedIn > most+1 || droppedIn == 0 {
		t.Fatalf("from the peer: relayed %d and dropped %d of %d; want about %d relayed", relayedIn, droppedIn, count, capacity/size)
	}

	// Another user is not held back by mallory's use.
	before := metricValue(t, reg, "khadga_turn_relayed_packets_total", map[string]string{"direction": "to_peer"})
	for range 10 {
		if _, err := other.WriteTo(payload, peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "olive's 10 datagrams relayed", func() bool {
		return metricValue(t, reg, "khadga_turn_relayed_packets_total", map[string]string{"direction": "to_peer"}) == before+10
	})

	// Closed allocations give their sockets and budgets up.
	for _, relay := range []net.PacketConn{first, second, other} {
		relay.Close()
	}
	waitFor(t, "the allocations to close", func() bool { return s.AllocationCount() == 0 })
	waitFor(t, "the budgets to go", func() bool {
		s.bandwidth.mu.Lock()
		defer s.bandwidth.mu.Unlock()
		return len(s.bandwidth.users) == 0 && len(s.bandwidth.conns) == 0
	})
}

// TestStrangerCannotSpendBandwidth: datagrams that reach a relay socket
// from an address the allocation has no permission for are not charged to
// its user, nor counted as relayed: a relay address is in every ICE
// candidate, and a stranger who floods it must not use up the budget the
// user's real peer needs.
func TestStrangerCannotSpendBandwidth(t *testing.T) {
	s, reg := startServer(t, func(c *Config) {
		c.AllowPeers = []string{"127.0.0.2/32"}
		c.UserBandwidth = 1024 // a burst of maxDatagram, then 1 KiB/s
	})
	u, p := mint("alice")
	relay, err := newClient(t, s.UDPAddr(), u, p).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	peer := listenPeer(t, "127.0.0.2:0")
	if _, err := relay.WriteTo([]byte("a permission for the peer"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	readWithin(t, peer)

	// More than the burst, in datagrams few enough for the socket's
	// buffer. The relay socket reads in arrival order, so the peer's
	// datagram after them is read after all of them.
	stranger := listenPeer(t, "127.0.0.3:0")
	junk := make([]byte, 1400)
	for range maxDatagram/len(junk) + 10 {
		if _, err := stranger.WriteTo(junk, relay.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	media := make([]byte, 1200) // more than a second's refill
	copy(media, "media from the permitted peer")
	if _, err := peer.WriteTo(media, relay.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if got, from := readWithin(t, relay); string(got) != string(media) {
		t.Fatalf("the client got %q from %v, want the peer's datagram", got, from)
	}
	from := map[string]string{"direction": "from_peer"}
	if n := metricValue(t, reg, "khadga_turn_relayed_packets_total", from); n != 1 {
		t.Errorf("%v datagrams counted as relayed from peers, want only the peer's 1", n)
	}
	if n := metricValue(t, reg, "khadga_turn_bandwidth_drops_total", from); n != 0 {
		t.Errorf("%v datagrams dropped over the bandwidth", n)
	}
}

// settle waits until the server accounted for all count datagrams sent in
// direction, relayed or dropped, and returns how many were each.
func settle(t *testing.T, reg *prometheus.Registry, direction string, count int) (relayed, dropped int) {
	t.Helper()
	labels := map[string]string{"direction": direction}
	waitFor(t, "every datagram relayed or dropped", func() bool {
		relayed = int(metricValue(t, reg, "khadga_turn_relayed_packets_total", labels))
		dropped = int(metricValue(t, reg, "khadga_turn_bandwidth_drops_total", labels))
		return relayed+dropped >= count
	})
	if relayed+dropped != count {
		t.Fatalf("%s: %d relayed and %d dropped, want %d in all", direction, relayed, dropped, count)
	}
	return relayed, dropped
}

// waitFor polls cond until it holds, or fails the test after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", waitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
