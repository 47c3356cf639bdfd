//go:build linux

package main

import (
	"fmt"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestCluster is the smoke run of -cluster 2: a nats-server and two
// `khadga serve --nats` nodes, built and started as the bench runs them,
// measured beside a single khadga (and PeerJS, when installed) with every
// relay pair split over the two nodes.
func TestCluster(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and starts khadga and nats-server")
	}
	// The tuned client's four pairs go faster than a connection may send
	// by default, in messages and in bytes; this test checks the bench.
	cfg := tinyConfig(t, "-cluster", "2", "-schemes", "ws", "-clients", "tuned", "-rounds", "1",
		"-server-arg=--ws-message-rate=1000000", "-server-arg=--ws-message-burst=1000000",
		"-server-arg=--ws-signal-bytes-rate=1000000000", "-server-arg=--ws-signal-burst-bytes=1000000000")
	if !peerJSInstalled(t, cfg) {
		cfg.Target = nameKhadga
	}
	if !slices.Contains(cfg.targetNames(), nameCluster) {
		t.Fatalf("targets %v lack %s", cfg.targetNames(), nameCluster)
	}
	rep := runTiny(t, cfg)
	c := rep.Runs[0]
	res := c.Targets[nameCluster]
	for _, r := range res.Idle {
		if r.Nodes != 2 || r.NATSRSSBytes <= 0 || r.NATSRSSBeforeBytes <= 0 {
			t.Errorf("cluster idle figures lack the nodes or NATS: %+v", r)
		}
	}
	if _, ok := c.ClusterFloors["cluster_relay_rate_p99_at_most_3ms"]; !ok {
		t.Errorf("p99 floor not checked: %v", c.ClusterFigures)
	}
	if _, ok := c.ClusterFloors["cluster_relay_max_at_least_peerjs"]; !ok && cfg.Target == "both" {
		t.Errorf("relay max floor not checked: %v", c.ClusterFigures)
	}
	var b strings.Builder
	if err := rep.table(&b); err != nil {
		t.Fatal(err)
	}
	if want := max(1, runtime.NumCPU()/3); rep.Settings.ClusterProcs != want {
		t.Errorf("cluster GOMAXPROCS reported %d, want each process's share of %d cores, %d", rep.Settings.ClusterProcs, runtime.NumCPU(), want)
	}
	for _, want := range []string{nameCluster, "NATS RSS MiB", "issue 13 floors", "2 nodes and NATS, GOMAXPROCS"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestCrossNodeOrder(t *testing.T) {
	// 400 connections dialed in turn over 3 nodes, starting anywhere:
	// whichever node has the one more, every pair is on two nodes.
	for _, tt := range []struct{ n, nodes, first int }{{400, 3, 0}, {400, 3, 1}, {400, 3, 2}, {11, 3, 0}, {8, 2, 1}, {12, 5, 3}} {
		var conns []*benchConn
		for i := range tt.n {
			conns = append(conns, &benchConn{id: fmt.Sprint(i), node: (tt.first + i) % tt.nodes})
		}
		got := crossNodeOrder(slices.Clone(conns))
		if len(got) != len(conns) {
			t.Fatalf("%+v: %d connections, want %d", tt, len(got), len(conns))
		}
		seen := map[*benchConn]bool{}
		for _, c := range got {
			seen[c] = true
		}
		if len(seen) != len(conns) {
			t.Errorf("%+v: %d distinct connections, want %d", tt, len(seen), len(conns))
		}
		for i := 0; i+1 < len(got); i += 2 {
			if got[i].node == got[i+1].node {
				t.Errorf("%+v: pair %d: both on node %d", tt, i/2, got[i].node)
			}
		}
	}
	one := []*benchConn{{id: "x"}, {id: "y"}, {id: "z"}}
	if got := crossNodeOrder(slices.Clone(one)); !slices.Equal(got, one) {
		t.Errorf("one node: order changed")
	}
}

func TestProcsFor(t *testing.T) {
	for _, tt := range []struct{ flag, nodes, want int }{
		{nodeProcsShare, 3, max(1, runtime.NumCPU()/4)},
		{nodeProcsShare, 1000, 1},
		{0, 3, 0},
		{2, 3, 2},
	} {
		cfg := &config{NodeProcs: tt.flag}
		if got := cfg.procsFor(tt.nodes); got != tt.want {
			t.Errorf("-node-procs %d, %d nodes: GOMAXPROCS %d, want %d", tt.flag, tt.nodes, got, tt.want)
		}
	}
	cmd := exec.Command("true")
	setProcs(cmd, 3)
	if !slices.Contains(cmd.Env, "GOMAXPROCS=3") {
		t.Errorf("environment %v lacks GOMAXPROCS=3", cmd.Env)
	}
	cmd = exec.Command("true")
	if setProcs(cmd, 0); cmd.Env != nil {
		t.Errorf("GOMAXPROCS 0 changed the environment: %v", cmd.Env)
	}
}
