package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/signaling/hub"
)

// beater returns beat, which publishes one heartbeat on the heartbeat
// subject of the default prefix for each of ids, as a node of that id
// would (or anyone who can publish there), and returns once NATS has them.
func beater(t *testing.T, urls string) (beat func(ids ...string)) {
	nc := natstest.Connect(t, urls)
	return func(ids ...string) {
		t.Helper()
		for _, id := range ids {
			if err := nc.Publish("khadga.hb", fmt.Appendf(nil, `{"node":%q}`, id)); err != nil {
				t.Fatal(err)
			}
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
}

// known returns how many other nodes tn remembers, and whether other is
// one of them and alive.
func known(tn *testNode, other string) (int, bool) {
	l := tn.node.live
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.nodes[other]
	return len(l.nodes), st != nil && st.gone.IsZero()
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint(prefix, i)
	}
	return out
}

// TestSilentNodesAreForgotten: heartbeats from 100 node ids (a node
// restarted 100 times makes as many), then silence. Each is taken for
// gone, its sessions removed, and forgetAfter later forgotten: the node's
// memory of nodes shrinks back to the nodes alive. It grew for good.
func TestSilentNodesAreForgotten(t *testing.T) {
	f := forgetAfter
	t.Cleanup(func() { forgetAfter = f })
	forgetAfter = 3 * time.Second // past fastConfig's DeadAfter and OrphanGrace (1.6 s)
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	startNode(t, "b", urls, fastConfig(), hub.Config{})
	eventually(t, "a to hear b", func() bool { _, b := known(a, "b"); return b })

	const n = 100
	beater(t, urls)(ids("old", n)...)
	eventually(t, "a to hear every id", func() bool { k, _ := known(a, "b"); return k == n+1 })
	eventually(t, "a to forget the silent ids", func() bool { k, _ := known(a, "b"); return k == 1 })
	if _, alive := known(a, "b"); !alive {
		t.Fatal("a forgot b, or took it for gone, while it beat")
	}
}

// TestNodeIDsCapped: heartbeats from more ids than a node remembers
// (maxNodes, 10 here), all at once. The node remembers at most maxNodes,
// b (alive) among them, ignores the rest, counts them and says so in its
// log. Once the flood's ids are gone and their sessions removed, a new id
// takes the place of one of them. The memory grew with every id.
func TestNodeIDsCapped(t *testing.T) {
	m := maxNodes
	t.Cleanup(func() { maxNodes = m })
	maxNodes = 10
	urls := natstest.Start(t).ClientURL()
	rec := &warnings{}
	cfg := fastConfig()
	cfg.Logger = slog.New(rec)
	a := startNode(t, "a", urls, cfg, hub.Config{})
	startNode(t, "b", urls, fastConfig(), hub.Config{})
	eventually(t, "a to hear b", func() bool { _, b := known(a, "b"); return b })

	const n = 50
	beat := beater(t, urls)
	beat(ids("flood", n)...)
	eventually(t, "a to refuse the ids past its cap", func() bool { return rec.has("too many node ids") })
	if k, alive := known(a, "b"); k > maxNodes || !alive {
		t.Fatalf("a remembers %d nodes (cap %d), b alive: %v", k, maxNodes, alive)
	}
	if got := testutil.ToFloat64(a.node.stats.nodesRefused); got < 1 {
		t.Fatalf("refused ids counted %v times, want at least once", got)
	}

	// The flood's ids, silent, are gone and cleaned after 1.6 s: a new
	// id then takes the place of one of them.
	eventually(t, "a to take a new id in place of a silent one", func() bool {
		beat("late")
		a.node.live.mu.Lock()
		defer a.node.live.mu.Unlock()
		return a.node.live.nodes["late"] != nil
	})
	if k, alive := known(a, "b"); k > maxNodes || !alive {
		t.Fatalf("a remembers %d nodes (cap %d), b alive: %v", k, maxNodes, alive)
	}
}

// dirEntries is how many sessions tn's directory has an entry for,
// tombstones included.
func dirEntries(tn *testNode) int {
	d := tn.node.dir
	d.imu.Lock()
	defer d.imu.Unlock()
	return len(d.byPeer)
}

// TestZeroStampsLeaveNoEntries: states and ends stamped zero (epoch 0,
// version 0), which no node makes, sent to a node directly and written to
// the directory's bucket, under 100 peer ids. None is applied (none is
// newer than nothing), and none may stay: each made an entry that was no
// tombstone (never swept) and named no node (never dropped), kept for as
// long as the node ran.
func TestZeroStampsLeaveNoEntries(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	nc := natstest.Connect(t, urls)
	send := func(m stateMsg) {
		t.Helper()
		b, _ := json.Marshal(m)
		if err := nc.Publish("khadga.node.a", append([]byte{opState}, b...)); err != nil {
			t.Fatal(err)
		}
	}
	put := func(peer, node string, epoch uint64) {
		t.Helper()
		b, _ := json.Marshal(record{User: "u", Role: "user", Node: node, Epoch: epoch})
		if _, err := a.node.kv.Put(context.Background(), peer, b); err != nil {
			t.Fatal(err)
		}
	}
	const n = 100
	for i := range n {
		send(stateMsg{Peer: fmt.Sprint("direct", i), Record: &record{User: "u", Role: "user", Node: "zz"}})
		send(stateMsg{Peer: fmt.Sprint("directgone", i), Gone: true})
		put(fmt.Sprint("kv", i), "zz", 0)
	}
	// Then one of each way, stamped as nodes stamp (an end, and a state
	// naming a, which makes no proxy of a node that would die meanwhile):
	// once a has them, it has handled everything before them.
	send(stateMsg{Peer: "lastdirect", Gone: true, Epoch: 1, Ver: 1})
	put("lastkv", "a", 1)
	eventually(t, "a to take the last state of each way", func() bool {
		d := a.node.dir
		d.imu.Lock()
		defer d.imu.Unlock()
		return d.byPeer["lastdirect"] != nil && d.byPeer["lastkv"] != nil
	})
	if k := dirEntries(a); k != 2 {
		t.Fatalf("a's directory has %d entries after %d zero-stamped states and ends, want the last 2 only", k, 3*n)
	}
}
