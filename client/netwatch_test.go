package client

import (
	"strings"
	"testing"
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
