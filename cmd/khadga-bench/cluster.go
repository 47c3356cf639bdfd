//go:build linux

// The khadga-cluster target (-cluster N): N khadga nodes on one NATS
// server, each a process of its own.

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
)

// nameCluster is the cluster target, as the report keys it.
const nameCluster = "khadga-cluster"

// clusterTarget is N `khadga serve --nats` nodes on one nats-server.
// Connections go to the nodes in turn, and the relay phases pair peers on
// different nodes (crossNodeOrder), so that every signal crosses NATS.
type clusterTarget struct {
	nats  *natsServer
	nodes []*khadgaTarget
	next  atomic.Uint64
}

// startCluster starts nats-server, then n nodes on it at once, each with
// its own --http and --turn-listen ports and data dir, and mints the
// tokens on the cluster (khadga token --nats: they are good on every
// node).
func startCluster(ctx context.Context, cfg *config, env *runEnv, cl *client, n int, presence bool, log *slog.Logger) (*clusterTarget, error) {
	procs := cfg.procsFor(n)
	ns, err := startNATS(ctx, env, procs, log)
	if err != nil {
		return nil, err
	}
	t := &clusterTarget{nats: ns, nodes: make([]*khadgaTarget, n)}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.nodes[i], errs[i] = newKhadgaTarget(ctx, cfg, env, cl, presence, ns.url, procs, log.With(slog.Int("node", i)))
			if errs[i] != nil {
				errs[i] = fmt.Errorf("node %d: %w", i, errs[i])
			}
		}()
	}
	wg.Wait()
	err = errors.Join(errs...)
	if err == nil {
		err = t.nodes[0].getTokens(ctx, cfg.Users)
	}
	if err != nil {
		t.nodes = slices.DeleteFunc(t.nodes, func(k *khadgaTarget) bool { return k == nil })
		_ = t.close()
		return nil, err
	}
	for _, k := range t.nodes[1:] {
		k.tokens = t.nodes[0].tokens
	}
	return t, nil
}

// validateCluster checks the -cluster and -scale flags.
func (c *config) validateCluster() error {
	var errs []error
	if c.Cluster < 0 || c.Cluster == 1 {
		errs = append(errs, errors.New("-cluster must be 0 (none) or at least 2: each pair's peers are on different nodes"))
	}
	if c.Cluster > 0 && (c.URL != "" || c.Target == namePeerJS) {
		errs = append(errs, errors.New("-cluster starts its own nodes: not with -url or -target peerjs"))
	}
	if c.Scale < 0 || c.Scale > 0 && c.Scale < 2*c.ScaleNodes {
		errs = append(errs, errors.New("-scale must be 0 (off) or at least two connections per node"))
	}
	if c.Scale > 0 && (c.URL != "" || c.Cluster > 0) {
		errs = append(errs, errors.New("-scale is a run of its own: not with -url or -cluster"))
	}
	if c.ScaleNodes < 2 || c.ScaleProcs < 0 || c.ScaleSignals < 1 {
		errs = append(errs, errors.New("-scale-nodes must be at least 2, -scale-procs at least 0, -scale-signals at least 1"))
	}
	return errors.Join(errs...)
}

func (t *clusterTarget) pid() int { return t.nodes[0].pid() }

func (t *clusterTarget) nodePIDs() []int {
	var out []int
	for _, n := range t.nodes {
		out = append(out, n.pid())
	}
	return out
}

func (t *clusterTarget) natsPID() int { return t.nats.pid() }

// dial opens a connection on the next node in turn.
func (t *clusterTarget) dial(ctx context.Context) (*benchConn, error) {
	i := int((t.next.Add(1) - 1) % uint64(len(t.nodes)))
	c, err := t.nodes[i].dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("node %d: %w", i, err)
	}
	c.node = i
	return c, nil
}

// pair joins a and b, which must be on different nodes, to room.
func (t *clusterTarget) pair(ctx context.Context, a, b *benchConn, room string) error {
	if a.node == b.node {
		return fmt.Errorf("pair %s: both peers on node %d; want different nodes", room, a.node)
	}
	return t.nodes[0].pair(ctx, a, b, room)
}

func (t *clusterTarget) presence() bool                 { return t.nodes[0].presence() }
func (t *clusterTarget) heartbeat() []byte              { return t.nodes[0].heartbeat() }
func (t *clusterTarget) signalPrefix(dst string) []byte { return t.nodes[0].signalPrefix(dst) }
func (t *clusterTarget) signalSuffix() []byte           { return t.nodes[0].signalSuffix() }

// close stops the nodes, all at once (each drains for up to its shutdown
// grace, 5 s), then NATS.
func (t *clusterTarget) close() error {
	errs := make([]error, len(t.nodes)+1)
	var wg sync.WaitGroup
	for i, n := range t.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = n.close() }()
	}
	wg.Wait()
	errs[len(t.nodes)] = t.nats.stop()
	return errors.Join(errs...)
}

// servers is implemented by a target of several processes: its memory
// and CPU are the sum over nodePIDs, and NATS's (natsPID) are reported
// apart.
type servers interface {
	nodePIDs() []int
	natsPID() int
}

// serverPIDs returns t's server processes (none when unknown) and its
// NATS server's (0 if none).
func serverPIDs(t target) (nodes []int, nats int) {
	if s, ok := t.(servers); ok {
		return s.nodePIDs(), s.natsPID()
	}
	if pid := t.pid(); pid > 0 {
		return []int{pid}, 0
	}
	return nil, 0
}

// rssSum is the sum of the processes' RSS.
func rssSum(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		r, err := rss(pid)
		if err != nil {
			return 0, err
		}
		sum += r
	}
	return sum, nil
}

// crossNodeOrder orders conns so that each pair of neighbours (0 and 1,
// 2 and 3, …) is on two different nodes where it can: each pair takes
// one connection from each of the two nodes with the most left, in the
// order they came. Connections of one node (every target but the
// cluster) keep their order.
func crossNodeOrder(conns []*benchConn) []*benchConn {
	var byNode [][]*benchConn
	for _, c := range conns {
		for len(byNode) <= c.node {
			byNode = append(byNode, nil)
		}
		byNode[c.node] = append(byNode[c.node], c)
	}
	out := make([]*benchConn, 0, len(conns))
	order := make([]int, len(byNode))
	for len(out) < len(conns) {
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int { return len(byNode[b]) - len(byNode[a]) })
		take := 2
		if len(order) < 2 || len(byNode[order[1]]) == 0 {
			take = 1 // one node left: its connections pair among themselves
		}
		for _, i := range order[:take] {
			out = append(out, byNode[i][0])
			byNode[i] = byNode[i][1:]
		}
	}
	return out
}
