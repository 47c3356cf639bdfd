//go:build linux

// What the soak run reads from its servers: /metrics, and /proc for RSS
// and descriptors; the baseline, the settle and the growth fitted over
// the samples.

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Slack of the settle check, per node: what a server may hold above its
// baseline once every client has gone. Goroutines come and go with timers
// (presence flushes, the cluster's heartbeats, a scrape of /metrics in
// progress); a descriptor with a scrape's connection.
const (
	settleGoroutineSlack = 10
	settleFDSlack        = 4
	// settlePoll is how often the baseline and the settle read the servers.
	settlePoll = 500 * time.Millisecond
)

// nodeFigures are one server's figures, or their sums over a cluster's
// nodes.
type nodeFigures struct {
	RSSBytes       int64 `json:"rss_bytes"`
	HeapInuseBytes int64 `json:"heap_inuse_bytes"`
	// HeapGoalBytes is the collector's next goal: the live heap after
	// the last collection times (1 + GOGC/100), or the server's floor,
	// which tracks what stays live better than the in-use heap, which
	// rises and falls with every cycle.
	HeapGoalBytes int64 `json:"heap_goal_bytes"`
	// HeapLowBytes is the lowest in-use heap read since the previous
	// sample (heapLow): the figure a leak raises.
	HeapLowBytes int64 `json:"heap_low_bytes"`
	Goroutines   int   `json:"goroutines"`
	FDs          int   `json:"fds"`
	Sessions     int   `json:"sessions"`
	Remote       int   `json:"remote_sessions"`
	Conns        int   `json:"connections"`
	Rooms        int   `json:"rooms"`
	Members      int   `json:"room_members"`
	Pending      int   `json:"cluster_signals_pending"`
	LimiterKeys  int   `json:"login_limiter_keys"`
}

func (f *nodeFigures) add(g nodeFigures) {
	f.RSSBytes += g.RSSBytes
	f.HeapInuseBytes += g.HeapInuseBytes
	f.HeapGoalBytes += g.HeapGoalBytes
	f.HeapLowBytes += g.HeapLowBytes
	f.Goroutines += g.Goroutines
	f.FDs += g.FDs
	f.Sessions += g.Sessions
	f.Remote += g.Remote
	f.Conns += g.Conns
	f.Rooms += g.Rooms
	f.Members += g.Members
	f.Pending += g.Pending
	f.LimiterKeys += g.LimiterKeys
}

// soakSample is the servers at one moment: the sums over the nodes, and
// each node's figures when there are several.
type soakSample struct {
	At        float64 `json:"at_s"` // since the churn began
	Connected int     `json:"clients_connected"`
	nodeFigures
	Nodes        []nodeFigures `json:"nodes,omitempty"`
	NATSRSSBytes int64         `json:"nats_rss_bytes,omitempty"`
	// NATSMessages is what JetStream stores, every stream together: a
	// session directory that keeps something of every ended session
	// grows it.
	NATSMessages uint64 `json:"nats_js_messages,omitempty"`
}

// metricNames maps the gauges of /metrics the soak reads to their
// figures; the cluster's are absent on a single node.
var metricNames = map[string]func(f *nodeFigures, v float64){
	"go_goroutines":                  func(f *nodeFigures, v float64) { f.Goroutines = int(v) },
	"go_memstats_heap_inuse_bytes":   func(f *nodeFigures, v float64) { f.HeapInuseBytes = int64(v) },
	"go_memstats_next_gc_bytes":      func(f *nodeFigures, v float64) { f.HeapGoalBytes = int64(v) },
	"khadga_hub_sessions":            func(f *nodeFigures, v float64) { f.Sessions = int(v) },
	"khadga_hub_remote_sessions":     func(f *nodeFigures, v float64) { f.Remote = int(v) },
	"khadga_hub_connections":         func(f *nodeFigures, v float64) { f.Conns = int(v) },
	"khadga_hub_rooms":               func(f *nodeFigures, v float64) { f.Rooms = int(v) },
	"khadga_hub_room_members":        func(f *nodeFigures, v float64) { f.Members = int(v) },
	"khadga_cluster_signals_pending": func(f *nodeFigures, v float64) { f.Pending = int(v) },
	"khadga_login_limiter_keys":      func(f *nodeFigures, v float64) { f.LimiterKeys = int(v) },
}

// requiredMetrics must be on every node's /metrics.
var requiredMetrics = []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "khadga_hub_sessions", "khadga_hub_rooms"}

// scrape reads node k's /metrics (answered to loopback clients), its RSS
// and its open descriptors.
func (st *soakTarget) scrape(ctx context.Context, k *khadgaTarget) (nodeFigures, error) {
	var f nodeFigures
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.base+"/metrics", nil)
	if err != nil {
		return f, err
	}
	resp, err := st.metrics.Do(req)
	if err != nil {
		return f, fmt.Errorf("/metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return f, fmt.Errorf("/metrics: HTTP %d", resp.StatusCode)
	}
	seen, err := parseMetrics(io.LimitReader(resp.Body, 8<<20), &f)
	if err != nil {
		return f, err
	}
	for _, name := range requiredMetrics {
		if !seen[name] {
			return f, fmt.Errorf("/metrics lacks %s", name)
		}
	}
	if f.RSSBytes, err = rss(k.pid()); err != nil {
		return f, err
	}
	f.FDs, err = countFDs(k.pid())
	return f, err
}

// parseMetrics reads the unlabelled samples of metricNames from the
// Prometheus text format into f, and says which it saw.
func parseMetrics(r io.Reader, f *nodeFigures) (map[string]bool, error) {
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		set := metricNames[name]
		if !ok || set == nil {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return seen, fmt.Errorf("/metrics %s: %w", name, err)
		}
		set(f, v)
		seen[name] = true
	}
	return seen, sc.Err()
}

// sample reads every node (and NATS's RSS).
func (st *soakTarget) sample(ctx context.Context, at time.Duration, connected int) (soakSample, error) {
	s := soakSample{At: round(at.Seconds(), 1), Connected: connected}
	for i, k := range st.nodes {
		f, err := st.scrape(ctx, k)
		if err != nil {
			return s, fmt.Errorf("node %d: %w", i, err)
		}
		f.HeapLowBytes = st.low.take(i, f.HeapInuseBytes)
		s.add(f)
		if len(st.nodes) > 1 {
			s.Nodes = append(s.Nodes, f)
		}
	}
	if st.nats != nil {
		var err error
		if s.NATSRSSBytes, err = rss(st.nats.pid()); err != nil {
			return s, err
		}
		j, err := st.nats.jsz(ctx)
		if err != nil {
			return s, err
		}
		s.NATSMessages = j.Messages
	}
	return s, nil
}

// nodesOf returns a sample's figures node by node.
func (s *soakSample) nodesOf() []nodeFigures {
	if len(s.Nodes) > 0 {
		return s.Nodes
	}
	return []nodeFigures{s.nodeFigures}
}

// quiet says what a node still holds of clients: sessions, rooms,
// connections, signals in flight; nil when none.
func (f nodeFigures) quiet() []string {
	var out []string
	for _, c := range []struct {
		name string
		n    int
	}{{"sessions", f.Sessions}, {"remote sessions", f.Remote}, {"connections", f.Conns}, {"rooms", f.Rooms},
		{"room members", f.Members}, {"cluster signals pending", f.Pending}} {
		if c.n != 0 {
			out = append(out, fmt.Sprintf("%d %s", c.n, c.name))
		}
	}
	return out
}

// baseline waits (at most wait) until no node holds anything of a client,
// then reads the servers a few times and keeps the fewest goroutines and
// descriptors each node had: the settle check measures against the
// quietest server.
func (st *soakTarget) baseline(ctx context.Context, wait time.Duration) (soakSample, error) {
	deadline := time.Now().Add(wait)
	var base soakSample
	for quietFor := 0; quietFor < 6; {
		if time.Now().After(deadline) {
			return base, fmt.Errorf("not quiet after %v: %v", wait, base.left(nil))
		}
		if err := sleepCtx(ctx, settlePoll); err != nil {
			return base, err
		}
		s, err := st.sample(ctx, 0, 0)
		if err != nil {
			return base, err
		}
		if len(s.left(nil)) > 0 {
			quietFor, base = 0, s
			continue
		}
		if quietFor == 0 {
			base = s
		}
		base.keepLeast(s)
		quietFor++
	}
	return base, nil
}

// keepLeast lowers b's goroutines and descriptors, node by node, to s's.
func (b *soakSample) keepLeast(s soakSample) {
	bn, sn := b.nodesOf(), s.nodesOf()
	var sum nodeFigures
	for i := range bn {
		bn[i].Goroutines = min(bn[i].Goroutines, sn[i].Goroutines)
		bn[i].FDs = min(bn[i].FDs, sn[i].FDs)
		sum.add(bn[i])
	}
	if len(b.Nodes) == 0 {
		b.nodeFigures = bn[0]
		return
	}
	b.Goroutines, b.FDs = sum.Goroutines, sum.FDs
}

// left lists what s holds that a settled server would not: any client's
// state, and, against base (if given), goroutines and descriptors above
// it beyond the slack.
func (s *soakSample) left(base *soakSample) []string {
	var out []string
	nodes := s.nodesOf()
	for i, f := range nodes {
		what := f.quiet()
		if base != nil {
			b := base.nodesOf()[i]
			if f.Goroutines > b.Goroutines+settleGoroutineSlack {
				what = append(what, fmt.Sprintf("%d goroutines (baseline %d)", f.Goroutines, b.Goroutines))
			}
			if f.FDs > b.FDs+settleFDSlack {
				what = append(what, fmt.Sprintf("%d descriptors (baseline %d)", f.FDs, b.FDs))
			}
		}
		if len(what) > 0 && len(nodes) > 1 {
			what[0] = fmt.Sprintf("node %d: %s", i, what[0])
		}
		out = append(out, what...)
	}
	return out
}

// settle waits, at most wait, until every node is back to base (within
// the slack) and holds nothing of a client, polling; it returns the last
// sample and what was left then (nil: settled).
func (st *soakTarget) settle(ctx context.Context, ran time.Duration, base soakSample, wait time.Duration) (soakSample, []string) {
	start := time.Now()
	var s soakSample
	left := []string{"not read"}
	for time.Since(start) < wait && ctx.Err() == nil {
		var err error
		if s, err = st.sample(ctx, ran+time.Since(start), 0); err != nil {
			left = []string{err.Error()}
		} else if left = s.left(&base); len(left) == 0 {
			return s, nil
		}
		if sleepCtx(ctx, settlePoll) != nil {
			break
		}
	}
	if ctx.Err() != nil {
		left = append(left, ctx.Err().Error())
	}
	return s, left
}

// growthPerHour fits a least-squares line to each figure over the samples
// of the run's second half (the first holds the warm-up of caches and
// pools) and returns its slope per hour, for the figures that have at
// least three samples there.
func growthPerHour(samples []soakSample, ran time.Duration) map[string]float64 {
	var xs []float64
	ys := map[string][]float64{}
	for _, s := range samples {
		if s.At < ran.Seconds()/2 {
			continue
		}
		xs = append(xs, s.At)
		for name, v := range map[string]float64{
			"rss_bytes": float64(s.RSSBytes), "heap_inuse_bytes": float64(s.HeapInuseBytes), "heap_goal_bytes": float64(s.HeapGoalBytes),
			"heap_low_bytes": float64(s.HeapLowBytes), "nats_js_messages": float64(s.NATSMessages),
			"goroutines": float64(s.Goroutines), "fds": float64(s.FDs), "sessions": float64(s.Sessions),
			"rooms": float64(s.Rooms), "room_members": float64(s.Members), "login_limiter_keys": float64(s.LimiterKeys),
		} {
			ys[name] = append(ys[name], v)
		}
	}
	if len(xs) < 3 {
		return nil
	}
	out := map[string]float64{}
	for name, y := range ys {
		if k, ok := slope(xs, y); ok {
			out[name] = round(k*3600, 1)
		}
	}
	return out
}

// slope is the least-squares slope of y over x.
func slope(x, y []float64) (float64, bool) {
	var mx, my float64
	for i := range x {
		mx += x[i]
		my += y[i]
	}
	mx /= float64(len(x))
	my /= float64(len(x))
	var sxy, sxx float64
	for i := range x {
		sxy += (x[i] - mx) * (y[i] - my)
		sxx += (x[i] - mx) * (x[i] - mx)
	}
	if sxx == 0 {
		return 0, false
	}
	return sxy / sxx, true
}
