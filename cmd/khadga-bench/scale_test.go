//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain makes the test binary a load process when the scale run
// re-executes it, as khadga-bench's main does.
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == roleLoad {
		os.Exit(loadMain())
	}
	os.Exit(m.Run())
}

// TestScale is the scale run in small: 300 idle connections over 3 nodes
// from 2 load processes (this test binary, re-executed), and 2 signals
// between random peers on different nodes, each delivered.
func TestScale(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and starts khadga and nats-server")
	}
	cfg, err := parseConfig([]string{"-scale", "300", "-scale-nodes", "3", "-scale-procs", "2", "-scale-signals", "2",
		"-settle", "0s", "-duration", "500ms", "-heartbeat", "200ms", "-users", "2", "-dialers", "10"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := run(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Scale
	if s == nil || len(rep.Runs) != 0 {
		t.Fatalf("scale %+v, %d combinations", s, len(rep.Runs))
	}
	if s.Procs != 2 || len(s.ConnsPerNode) != 3 || s.ConnsPerNode[0]+s.ConnsPerNode[1]+s.ConnsPerNode[2] != 300 {
		t.Errorf("%d processes, connections per node %v", s.Procs, s.ConnsPerNode)
	}
	for i, n := range s.ConnsPerNode {
		if n != 100 {
			t.Errorf("node %d holds %d connections, want 100", i, n)
		}
	}
	if len(s.Signals) != 2 {
		t.Fatalf("signals %+v", s.Signals)
	}
	for _, sig := range s.Signals {
		if sig.FromNode == sig.ToNode || sig.From == "" || sig.To == "" || sig.Ms <= 0 {
			t.Errorf("signal %+v", sig)
		}
	}
	if s.NodesRSSBytes <= 0 || s.NATSRSSBytes <= 0 || s.LoadRSSBytes <= 0 || s.NATSIdle.Seconds <= 0 {
		t.Errorf("memory or NATS traffic missing: %+v", s)
	}
	// Each load process holds its 150 connections and a few of its own;
	// each node its 100.
	if s.MaxFDs["load"] < 150 || s.MaxFDs["node"] < 100 || s.FDLimit == 0 {
		t.Errorf("descriptors %v, limit %d", s.MaxFDs, s.FDLimit)
	}
	// The heartbeats were answered: 300 connections, 5 a second, for
	// longer than a second.
	if s.Stats.Received < 300 || s.Stats.Dropped != 0 {
		t.Errorf("load stats %+v", s.Stats)
	}
	var b strings.Builder
	if err := writeReport(&b, cfg, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"scale: 300 idle connections over 3 nodes, 2 load processes", "NATS traffic per idle connection", "delivered in"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestScaleTooManyForTheLimit(t *testing.T) {
	cfg, err := parseConfig([]string{"-scale", "100000", "-scale-nodes", "5"})
	if err != nil {
		t.Fatal(err)
	}
	ct := &clusterTarget{nodes: []*khadgaTarget{{serverP: os.Getpid()}}}
	var res scaleResult
	err = checkScaleFDs(cfg, ct, &res)
	if limit, _ := noFileLimit(os.Getpid()); limit <= 20000 && (err == nil || !strings.Contains(err.Error(), "at most")) {
		t.Fatalf("20,000 connections a node under a limit of %d: %v", limit, err)
	}
}

// TestRetryAfter: the scale run's load processes wait and dial again
// only when a node says "not now" (503 with Retry-After), as a client
// does; any other refusal stops the run.
func TestRetryAfter(t *testing.T) {
	for _, c := range []struct {
		status int
		header string
		want   time.Duration
		ok     bool
	}{
		{http.StatusServiceUnavailable, "5", 5 * time.Second, true},
		{http.StatusServiceUnavailable, "", 0, false},
		{http.StatusServiceUnavailable, "soon", 0, false},
		{http.StatusTooManyRequests, "5", 0, false},
		{http.StatusUnauthorized, "", 0, false},
	} {
		resp := &http.Response{StatusCode: c.status, Header: http.Header{}}
		if c.header != "" {
			resp.Header.Set("Retry-After", c.header)
		}
		later, ok := retryAfter(resp)
		if ok != c.ok || later.after != c.want {
			t.Errorf("%d Retry-After %q: %v, %v; want %v, %v", c.status, c.header, later.after, ok, c.want, c.ok)
		}
		if ok {
			err := fmt.Errorf("dial: %w", fmt.Errorf("%w (%w)", errors.New("websocket: bad handshake"), later))
			var got errRetryLater
			if !errors.As(err, &got) || got.after != c.want {
				t.Errorf("the dial error does not carry the wait: %v", err)
			}
		}
	}
}
