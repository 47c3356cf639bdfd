package cluster

import (
	"slices"
	"testing"
	"time"
)

// TestOrderAdmit: a node delivers another node's numbered signals to a
// session in their order, holding those that come early until the gap
// fills or orderWait passes, and delivering late ones at once.
func TestOrderAdmit(t *testing.T) {
	now := time.Now()
	sig := func(src string, seq uint64) delivery {
		return delivery{to: "bob", osrc: src, oseq: seq, msg: []byte{byte(seq)}}
	}
	seqs := func(ds []delivery) []uint64 {
		var out []uint64
		for _, d := range ds {
			out = append(out, d.oseq)
		}
		return out
	}
	// admit returns what admitLocked hands on.
	admit := func(o *orderer, d delivery) []uint64 {
		var due []delivery
		o.admitLocked(d, now, func(d delivery) { due = append(due, d) })
		return seqs(due)
	}
	for _, tc := range []struct {
		name    string
		install map[string]uint64
		in      []uint64
		want    [][]uint64 // due after each arrival
	}{
		{"in order", nil, []uint64{5, 6, 7}, [][]uint64{{5}, {6}, {7}}},
		{"a gap that fills", map[string]uint64{"a": 3}, []uint64{5, 4, 3}, [][]uint64{nil, nil, {3, 4, 5}}},
		{"late", nil, []uint64{5, 6, 4, 7}, [][]uint64{{5}, {6}, {4}, {7}}},
		{"a duplicate early one", map[string]uint64{"a": 1}, []uint64{3, 3, 2, 1}, [][]uint64{nil, nil, nil, {1, 2, 3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrderer(nil)
			o.install("bob", tc.install, false)
			for i, seq := range tc.in {
				if got := admit(o, sig("a", seq)); !slices.Equal(got, tc.want[i]) {
					t.Fatalf("after %v: due %v, want %v", tc.in[:i+1], got, tc.want[i])
				}
			}
		})
	}
	t.Run("the wait ends", func(t *testing.T) {
		o := newOrderer(nil)
		o.install("bob", map[string]uint64{"a": 1}, false)
		admit(o, sig("a", 3))
		admit(o, sig("a", 2))
		var released []delivery
		o.releaseAllLocked(o.in["bob"]["a"], func(d delivery) { released = append(released, d) })
		if got := seqs(released); !slices.Equal(got, []uint64{2, 3}) || len(o.waiting) != 0 {
			t.Fatalf("released %v, want [2 3]; %d still waiting", got, len(o.waiting))
		}
		if got := admit(o, sig("a", 4)); !slices.Equal(got, []uint64{4}) {
			t.Fatalf("after the wait: due %v, want [4]", got)
		}
		if got := admit(o, sig("a", 1)); !slices.Equal(got, []uint64{1}) {
			t.Fatalf("the missing one, late: due %v, want [1]", got)
		}
	})
	t.Run("a copy does not restart the wait", func(t *testing.T) {
		o := newOrderer(nil)
		o.install("bob", map[string]uint64{"a": 1}, false)
		admit(o, sig("a", 3))
		st := o.in["bob"]["a"]
		first := st.since
		o.admitLocked(sig("a", 3), now.Add(time.Second), func(delivery) { t.Fatal("a copy of an early one was handed on") })
		if !st.since.Equal(first) || len(st.early) != 1 {
			t.Fatalf("after a copy: waiting since %v (was %v), %d early", st.since, first, len(st.early))
		}
	})
	t.Run("a claim takes the order", func(t *testing.T) {
		o := newOrderer(nil)
		admit(o, sig("a", 7))
		admit(o, sig("a", 9))
		admit(o, sig("x", 2))
		next, early := o.takeLocked("bob")
		if next["a"] != 8 || next["x"] != 3 || len(early) != 1 || early[0].oseq != 9 || len(o.waiting) != 0 {
			t.Fatalf("took %v and early %v", next, seqs(early))
		}
		if _, ok := o.in["bob"]; ok {
			t.Fatal("the order stayed after the claim")
		}
	})
}

// TestNumberedDeliverRoundTrip: a numbered deliver decodes to what was
// encoded, and one without its number or node is refused.
func TestNumberedDeliverRoundTrip(t *testing.T) {
	d := delivery{kind: 1, seq: 42, to: "bob", from: "alice", ref: "s1", origin: "b", osrc: "a", oseq: 7, msg: []byte(`{"x":1}`)}
	b := appendDeliver(nil, d)
	if b[0] != opNumbered {
		t.Fatalf("op %q", b[0])
	}
	got, err := decodeDeliver(b)
	if err != nil || got.osrc != d.osrc || got.oseq != d.oseq || got.to != d.to || got.origin != d.origin || string(got.msg) != string(d.msg) {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	d.osrc = ""
	if _, err := decodeDeliver(appendDeliver(nil, d)); err == nil {
		t.Fatal("a numbered deliver with no node decoded")
	}
	d.oseq = 0
	if b := appendDeliver(nil, d); b[0] != opDeliver {
		t.Fatalf("an unnumbered deliver has op %q", b[0])
	}
}

// TestUnnumber: the number of a signal that was never sent is given back
// while no later one was given, so that the target does not hold the next
// one for it.
func TestUnnumber(t *testing.T) {
	o := newOrderer(nil)
	if n := o.number("bob"); n != 1 {
		t.Fatalf("first number %d", n)
	}
	o.unnumber("bob", 1)
	if n := o.number("bob"); n != 1 {
		t.Fatalf("after giving 1 back: %d, want 1 again", n)
	}
	o.number("bob") // 2
	o.unnumber("bob", 1)
	if n := o.number("bob"); n != 3 {
		t.Fatalf("giving back a number with a later one out: next %d, want 3", n)
	}
}
