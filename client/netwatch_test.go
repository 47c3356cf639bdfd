package client

import (
	"strings"
	"testing"
	"time"
)

// The watch acts once per move, after the new addresses held for one
// read: not on the gap between two networks (no address), not while
// they still change, not when addresses are only added (a second network,
// a new temporary IPv6 address), and again when one of those goes.
func TestAddrWatchActsOncePerMove(t *testing.T) {
	w := addrWatch{acted: "198.51.100.2", last: "198.51.100.2"}
	for i, step := range []struct {
		set  string
		want bool
	}{
		{"198.51.100.2", false},                            // nothing new
		{"", false},                                        // the interface went
		{"", false},                                        // no network for a while
		{"198.51.100.34", false},                           // the new address came...
		{"198.51.100.34 2001:db8::34", false},              // ...and another
		{"198.51.100.34 2001:db8::34", true},               // they held, the old one is gone: act
		{"198.51.100.34 2001:db8::34", false},              // once
		{"198.51.100.34 2001:db8::34 2001:db8::99", false}, // a temporary IPv6 address comes
		{"198.51.100.34 2001:db8::34 2001:db8::99", false}, // it held, nothing was lost
		{"198.51.100.34 2001:db8::99", false},              // one goes...
		{"198.51.100.34 2001:db8::99", true},               // ...for good: act
		{"198.51.100.2", false},                            // back to the old network
		{"198.51.100.2", true},                             // a move too: act
		{"198.51.100.2", false},
	} {
		if got := w.saw(step.set); got != step.want {
			t.Errorf("read %d (%q): act %v, want %v", i, step.set, got, step.want)
		}
	}
}

// hostAddrs reads this host's addresses without loopback.
func TestHostAddrsLeaveOutLoopback(t *testing.T) {
	set, err := hostAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, lo := range []string{"127.0.0.1", "::1"} {
		for _, a := range strings.Fields(set) {
			if a == lo {
				t.Errorf("%q lists loopback %s", set, lo)
			}
		}
	}
}

// A change of the host's addresses restarts ICE with a connected peer at
// once and says so; a flurry of changes (a flapping interface) restarts it
// once more when restartMinInterval has passed, and then no more.
func TestNetworkChangeRestartsICE(t *testing.T) {
	ts := startServer(t, false)
	alice, bob := ts.newClient(t, "alice", WithNetworkWatch(0)), ts.newClient(t, "bob", WithNetworkWatch(0))
	ra, rb := join(t, alice, "move"), join(t, bob, "move")
	connected(t, ra, "bob")
	connected(t, rb, "alice")
	pa, _ := ra.peer(bob.Self().Peer)
	waitStable(t, pa)
	ufrag := func() string {
		got := make(chan string, 1)
		pa.enqueue(func() { got <- localUfrag(pa) })
		return <-got
	}
	restarted := func(from string, within time.Duration) string {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			if u := ufrag(); u != from {
				waitStable(t, pa)
				return u
			}
			if time.Now().After(deadline) {
				return from
			}
			time.Sleep(20 * time.Millisecond) // polling the peer's description
		}
	}
	set, err := hostAddrs()
	if err != nil {
		t.Fatal(err)
	}
	u0 := ufrag()
	alice.networkChanged(set)
	ev := waitEvent[*NetworkChanged](t, alice.events, nil)
	if len(ev.Peers) != 1 || ev.Peers[0].User != "bob" {
		t.Fatalf("NetworkChanged for %+v, want bob", ev.Peers)
	}
	u1 := restarted(u0, testTimeout)
	if u1 == u0 {
		t.Fatal("ICE did not restart after the network changed")
	}
	for range 6 {
		alice.networkChanged(set)
	}
	u2 := restarted(u1, testTimeout)
	if u2 == u1 {
		t.Fatal("ICE did not restart after a flurry of changes")
	}
	if u3 := restarted(u2, restartMinInterval+time.Second); u3 != u2 {
		t.Error("a flurry of six changes restarted ICE more than once")
	}
	if _, err := ra.Send("still here"); err != nil {
		t.Fatal(err)
	}
	if m := waitEvent[*Message](t, rb.events, nil); m.Text != "still here" {
		t.Fatalf("bob got %q", m.Text)
	}
}
