package client

import (
	"context"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/netlab"
)

// The watch acts on a move of the host's addresses, in a namespace of the
// test's own: told by the kernel (netlink notices), or on its timer where
// there are none or they stop. It acts once per move, not when an address
// is only added.
func TestWatchActsOnAMove(t *testing.T) {
	for _, mode := range []string{"notices", "timer", "notices that stop"} {
		t.Run(mode, func(t *testing.T) {
			ns, read := watchHost(t, "nw")
			var n *netNotices
			var notices <-chan struct{}
			if mode != "timer" {
				if err := ns.Do(func() (err error) { n, err = openNetNotices(); return err }); err != nil {
					t.Fatal(err)
				}
				defer n.close()
				notices = n.notices()
			}
			acted := startWatch(t, notices, 50*time.Millisecond, read)
			if mode == "notices that stop" {
				n.close()
			}

			// An address only added is no move; the next act names the
			// set after the old address went, not the one with both.
			ns.IP(t, "addr", "add", "203.0.113.2/24", "dev", "wifi")
			moved := time.Now()
			ns.IP(t, "addr", "del", "198.51.100.2/24", "dev", "wifi")
			select {
			case set := <-acted:
				if set != "203.0.113.2" {
					t.Fatalf("acted on %q, want 203.0.113.2", set)
				}
				t.Logf("%s: acted %v after the move", mode, time.Since(moved).Round(time.Millisecond))
			case <-time.After(testTimeout):
				t.Fatal("the watch did not act on the move")
			}
		})
	}
}

// An interface comes up in steps: its address, then its route. Until the
// default route is there the host can reach nobody from the new address,
// and the watch takes it as between networks; it acts once the route
// comes, told by the kernel.
func TestWatchWaitsForTheRoute(t *testing.T) {
	ns, read := watchHost(t, "nr")
	var n *netNotices
	if err := ns.Do(func() (err error) { n, err = openNetNotices(); return err }); err != nil {
		t.Fatal(err)
	}
	defer n.close()
	acted := startWatch(t, n.notices(), time.Hour, read)

	// The move: the old interface goes with its route; the new address
	// comes without one.
	ns.IP(t, "link", "del", "wifi")
	ns.IP(t, "link", "add", "wifi2", "type", "veth", "peer", "name", "ap2")
	ns.IP(t, "link", "set", "ap2", "up")
	ns.IP(t, "link", "set", "wifi2", "up")
	ns.IP(t, "addr", "add", "203.0.113.2/24", "dev", "wifi2")
	if set, err := read(); err != nil || set != "" {
		t.Fatalf("with an address and no default route, read %q, %v; want none", set, err)
	}
	ns.IP(t, "route", "add", "default", "dev", "wifi2")
	select {
	case set := <-acted:
		if set != "203.0.113.2" {
			t.Fatalf("acted on %q, want 203.0.113.2", set)
		}
	case <-time.After(testTimeout):
		t.Fatal("the watch did not act once the route came")
	}
}

// watchHost is a namespace of the test's own with one interface, wifi,
// at 198.51.100.2 with a default route, and a way to read its addresses
// from inside.
func watchHost(t *testing.T, name string) (*netlab.Netns, func() (string, error)) {
	t.Helper()
	ns := netlab.New(t, name).Netns(t, "host")
	ns.IP(t, "link", "add", "wifi", "type", "veth", "peer", "name", "ap")
	ns.IP(t, "link", "set", "ap", "up")
	ns.IP(t, "link", "set", "wifi", "up")
	ns.IP(t, "addr", "add", "198.51.100.2/24", "dev", "wifi")
	ns.IP(t, "route", "add", "default", "dev", "wifi")
	read := func() (set string, err error) {
		err = ns.Do(func() (err error) { set, err = hostAddrs(); return err })
		return set, err
	}
	return ns, read
}

// startWatch runs a watch of read's addresses, acted on at 198.51.100.2,
// until the test ends; what it acts on comes on the channel.
func startWatch(t *testing.T, notices <-chan struct{}, every time.Duration, read func() (string, error)) <-chan string {
	t.Helper()
	first, err := read()
	if err != nil || first != "198.51.100.2" {
		t.Fatalf("first read %q, %v", first, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	acted := make(chan string, 8)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w := addrWatch{acted: first, last: first}
		w.run(ctx, notices, every, read, func(set string) { acted <- set })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return acted
}
