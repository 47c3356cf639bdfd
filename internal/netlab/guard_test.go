package netlab

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// recordTB keeps what a lab reports at its cleanup, so that a test can
// check it without failing.
type recordTB struct {
	testing.TB
	errs     []string
	cleanups []func()
}

func (r *recordTB) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recordTB) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

// TestNamespaceSetup: a lab's namespace has IPv6 off, its guard survives
// FlushNft, and the cleanup fails the lab's test with every destination
// the guard dropped. The test sends nothing: it puts ::1 in the guard's
// record by hand.
func TestNamespaceSetup(t *testing.T) {
	need(t)
	rec := &recordTB{TB: t}
	lab := New(rec, "gd")
	t.Cleanup(lab.remove) // if the test stops before it runs rec's cleanups
	n := lab.Netns(t, "x")

	out, err := n.run(nil, "cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6", "/proc/sys/net/ipv6/conf/default/disable_ipv6", "/proc/sys/net/ipv6/conf/lo/disable_ipv6")
	if err != nil || string(out) != "1\n1\n1\n" {
		t.Errorf("disable_ipv6 (all, default, lo): %q, %v; want 1 each", out, err)
	}
	n.Nft(t, `table ip nat {
	chain post { type nat hook postrouting priority srcnat; }
}`)
	n.FlushNft(t)
	out, err = n.run(nil, "nft", "list", "tables")
	if err != nil || strings.TrimSpace(string(out)) != "table inet "+guardTable {
		t.Errorf("tables after FlushNft: %q, %v; want the guard alone", out, err)
	}
	if dropped, err := n.guarded(); err != nil || len(dropped) != 0 {
		t.Errorf("guard of a quiet namespace: %v, %v; want nothing dropped", dropped, err)
	}

	n.Nft(t, "add element inet "+guardTable+" outside6 { ::1 }")
	for _, f := range rec.cleanups {
		f()
	}
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "x sent packets outside the lab's ranges (dropped) to ::1") {
		t.Errorf("cleanup reported %q, want the guard's ::1", rec.errs)
	}
	if _, err := os.Stat(n.Path()); !os.IsNotExist(err) {
		t.Errorf("namespace %s still there after cleanup (%v)", n.SystemName(), err)
	}
}

func TestTablesBut(t *testing.T) {
	got := tablesBut("table inet netlab_guard\ntable ip nat\ntable inet fw\ntable ip netlab_guard\n")
	want := "delete table ip nat\ndelete table inet fw\ndelete table ip netlab_guard\n"
	if got != want {
		t.Errorf("tablesBut: %q, want %q", got, want)
	}
}
