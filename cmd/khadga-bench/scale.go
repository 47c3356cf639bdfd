//go:build linux

// The scale run (-scale N): N idle authenticated connections over
// -scale-nodes nodes on one NATS server, held by load processes (the
// bench re-executed, loadproc.go) so that no process holds more than its
// descriptor limit; then signals between random peers on different nodes.

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// maxConnsPerProcess is the most connections -scale-procs 0 gives one load
// process: under the 20,000-descriptor limit of this machine, with room
// for the process's own.
const maxConnsPerProcess = 18000

// fdSlack is the descriptors a node or load process needs beyond its
// connections and what it held when it started: a reconnect to NATS, a
// scrape of /metrics, the readiness probe.
const fdSlack = 32

// scaleWait bounds how long the load processes may take to open their
// connections.
const scaleWait = 15 * time.Minute

// scaleResult is what the scale run measured.
type scaleResult struct {
	Conns        int     `json:"conns"`
	Nodes        int     `json:"nodes"`
	Procs        int     `json:"load_processes"`
	Heartbeat    float64 `json:"heartbeat_s"`
	ConnsPerNode []int   `json:"conns_per_node"`
	OpenSeconds  float64 `json:"open_s"`
	// Memory: the nodes' RSS summed, before the first connection and
	// with all of them idle; NATS's and the load processes' apart.
	NodesRSSBeforeBytes int64   `json:"nodes_rss_before_bytes"`
	NodesRSSBytes       int64   `json:"nodes_rss_bytes"`
	PerConnBytes        float64 `json:"per_conn_bytes"`
	NATSRSSBeforeBytes  int64   `json:"nats_rss_before_bytes"`
	NATSRSSBytes        int64   `json:"nats_rss_bytes"`
	NATSPerConnBytes    float64 `json:"nats_per_conn_bytes"`
	LoadRSSBytes        int64   `json:"load_rss_bytes"`
	// NATS's traffic with no connection, and with every connection idle;
	// PerConn is (idle - before) / Conns.
	NATSBefore  natsTraffic `json:"nats_before"`
	NATSIdle    natsTraffic `json:"nats_idle"`
	NATSPerConn natsTraffic `json:"nats_per_conn"`
	// Descriptors: the most any node, load process, NATS or the bench
	// held, and the limit each ran under.
	MaxFDs  map[string]int `json:"max_fds"`
	FDLimit uint64         `json:"fd_limit"`
	// Signals between random peers on different nodes, each delivered.
	Signals []scaleSignal `json:"signals"`
	Stats   loadStats     `json:"load_stats"`
}

type scaleSignal struct {
	From     string  `json:"from"`
	To       string  `json:"to"`
	FromNode int     `json:"from_node"`
	ToNode   int     `json:"to_node"`
	Ms       float64 `json:"ms"`
}

// loadProc is one load process as the parent drives it.
type loadProc struct {
	proc   *process
	stdin  io.Closer
	in     *json.Encoder
	events chan loadEvent
	peers  []loadPeer
	conns  int
}

// scaleRun runs the scale run in env.
func scaleRun(ctx context.Context, cfg *config, env *runEnv, log *slog.Logger) (_ *scaleResult, err error) {
	res := &scaleResult{Conns: cfg.Scale, Nodes: cfg.ScaleNodes, Heartbeat: cfg.Heartbeat.Seconds(), MaxFDs: map[string]int{}}
	cl := newClient(combo{Scheme: schemeWS, Client: clientTuned}, nil)
	defer cl.close()
	ct, err := startScaleCluster(ctx, cfg, env, cl, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			// What the servers said, before their dirs go.
			for i, n := range ct.nodes {
				log.Warn("node's log", slog.Int("node", i), slog.String("tail", n.proc.logTail()))
			}
			log.Warn("nats-server's log", slog.String("tail", ct.nats.proc.logTail()))
		}
		if err := ct.close(); err != nil {
			log.Warn("stopping the cluster", slog.Any("err", err))
		}
	}()
	if err := checkScaleFDs(cfg, ct, res); err != nil {
		return nil, err
	}
	if err := res.baseline(ctx, cfg, ct, log); err != nil {
		return nil, err
	}
	start := time.Now()
	procs, err := startLoadProcs(ctx, cfg, env, ct, log)
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	if err != nil {
		return res, err
	}
	res.OpenSeconds = round(time.Since(start).Seconds(), 1)
	res.Procs = len(procs)
	log.Info("scale: every connection open", slog.Int("conns", cfg.Scale), slog.Float64("seconds", res.OpenSeconds))
	if err := res.measure(ctx, cfg, ct, procs, log); err != nil {
		return res, err
	}
	if err := res.signal(ctx, cfg, procs, log); err != nil {
		return res, err
	}
	return res, res.collectStats(procs)
}

// startScaleCluster starts NATS and the nodes, with the presence feed off
// on every connection.
func startScaleCluster(ctx context.Context, cfg *config, env *runEnv, cl *client, log *slog.Logger) (*clusterTarget, error) {
	return startCluster(ctx, cfg, env, cl, cfg.ScaleNodes, false, log)
}

// checkScaleFDs fails early, and says why, when a node or a load process
// would need more descriptors than its limit: each node holds its share
// of the connections on top of what it held at start (listeners, NATS,
// TURN sockets, the poller).
func checkScaleFDs(cfg *config, ct *clusterTarget, res *scaleResult) error {
	perNode := (cfg.Scale + cfg.ScaleNodes - 1) / cfg.ScaleNodes
	for i, pid := range ct.nodePIDs() {
		limit, err := noFileLimit(pid)
		if err != nil {
			return err
		}
		own, err := countFDs(pid)
		if err != nil {
			return err
		}
		res.FDLimit = limit
		if need := uint64(perNode + own + fdSlack); need > limit {
			most := (int(limit) - own - fdSlack) * cfg.ScaleNodes
			return fmt.Errorf("node %d would need %d descriptors (%d connections, %d of its own at start, %d spare) and may open %d: "+
				"at most %d connections fit on %d nodes here (raise the hard limit, ulimit -Hn, or add nodes)",
				i, need, perNode, own, fdSlack, limit, most, cfg.ScaleNodes)
		}
	}
	return nil
}

// baseline reads the nodes' and NATS's memory and NATS's traffic before
// any connection.
func (res *scaleResult) baseline(ctx context.Context, cfg *config, ct *clusterTarget, log *slog.Logger) error {
	var err error
	if res.NodesRSSBeforeBytes, err = stableRSS(ctx, ct.nodePIDs()...); err != nil {
		return err
	}
	if res.NATSRSSBeforeBytes, err = rss(ct.natsPID()); err != nil {
		return err
	}
	if res.NATSBefore, err = ct.nats.traffic(ctx, cfg.Duration); err != nil {
		return err
	}
	log.Info("scale: baseline", slog.Int64("nodes_rss_kib", res.NodesRSSBeforeBytes>>10),
		slog.Int64("nats_rss_kib", res.NATSRSSBeforeBytes>>10), slog.Any("nats", res.NATSBefore))
	return nil
}

// startLoadProcs starts the load processes and waits until every one has
// opened its connections.
func startLoadProcs(ctx context.Context, cfg *config, env *runEnv, ct *clusterTarget, log *slog.Logger) ([]*loadProc, error) {
	n := cfg.ScaleProcs
	if n == 0 {
		n = (cfg.Scale + maxConnsPerProcess - 1) / maxConnsPerProcess
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil, err
	}
	if need := (cfg.Scale+n-1)/n + 64 + fdSlack; uint64(need) > lim.Cur {
		return nil, fmt.Errorf("%d load processes would hold %d connections each, over their descriptor limit %d: raise -scale-procs", n, (cfg.Scale+n-1)/n, lim.Cur)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	spec := loadSpec{Tokens: ct.nodes[0].tokens, Dialers: max(cfg.Dialers/n, 4), Heartbeat: cfg.Heartbeat}
	for _, node := range ct.nodes {
		spec.URLs = append(spec.URLs, node.wsURL)
	}
	var procs []*loadProc
	for i := range n {
		spec.Conns = cfg.Scale/n + btoi(i < cfg.Scale%n)
		p, err := startLoadProc(ctx, env, self, spec, log.With(slog.Int("load", i)))
		if err != nil {
			return procs, fmt.Errorf("load process %d: %w", i, err)
		}
		procs = append(procs, p)
		spec.First += spec.Conns
	}
	deadline := time.After(scaleWait)
	for i, p := range procs {
		if err := p.awaitReady(ctx, deadline, log); err != nil {
			return procs, fmt.Errorf("load process %d: %w\n%s", i, err, p.proc.logTail())
		}
	}
	return procs, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func startLoadProc(ctx context.Context, env *runEnv, self string, spec loadSpec, log *slog.Logger) (*loadProc, error) {
	dir, err := os.MkdirTemp(env.dir, "load-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), roleEnv+"="+roleLoad)
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	proc, err := startProcess(cmd, dir, log)
	if err != nil {
		return nil, err
	}
	p := &loadProc{proc: proc, stdin: stdin, in: json.NewEncoder(stdin), events: make(chan loadEvent, 16), conns: spec.Conns}
	go func() {
		defer close(p.events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 64<<20) // ready lists every peer
		for sc.Scan() {
			var e loadEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				e = loadEvent{Event: "error", Error: fmt.Sprintf("bad event %.80q: %v", sc.Bytes(), err)}
			}
			select {
			case p.events <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := p.in.Encode(spec); err != nil {
		_ = proc.stop()
		return nil, err
	}
	log.Info("load process started", slog.Int("pid", cmd.Process.Pid), slog.Int("conns", spec.Conns))
	return p, nil
}

// stop closes the process's stdin, on which it exits, and waits for it
// (stop kills it after 10 s).
func (p *loadProc) stop() {
	p.stdin.Close()
	select {
	case <-p.proc.done:
	case <-time.After(10 * time.Second):
	}
	_ = p.proc.stop()
}

// next is the load process's next event, or an error when it exits, ctx
// ends or deadline comes.
func (p *loadProc) next(ctx context.Context, deadline <-chan time.Time) (loadEvent, error) {
	select {
	case e, ok := <-p.events:
		if !ok {
			<-p.proc.done
			return e, fmt.Errorf("exited: %v", p.proc.err)
		}
		if e.Event == "error" {
			return e, errors.New(e.Error)
		}
		return e, nil
	case <-deadline:
		return loadEvent{}, errors.New("timed out")
	case <-ctx.Done():
		return loadEvent{}, ctx.Err()
	}
}

func (p *loadProc) awaitReady(ctx context.Context, deadline <-chan time.Time, log *slog.Logger) error {
	last := time.Now()
	for {
		e, err := p.next(ctx, deadline)
		if err != nil {
			return err
		}
		switch e.Event {
		case "ready":
			p.peers = e.Peers
			if len(p.peers) != p.conns {
				return fmt.Errorf("ready with %d connections, want %d", len(p.peers), p.conns)
			}
			return nil
		case "progress":
			if time.Since(last) > 5*time.Second {
				last = time.Now()
				log.Info("scale: opening", slog.Int("pid", p.proc.cmd.Process.Pid), slog.Int("opened", e.Opened), slog.Int("of", p.conns))
			}
		}
	}
}

// ask sends cmd and returns the next event, which must be want.
func (p *loadProc) ask(ctx context.Context, cmd loadCommand, want string) (loadEvent, error) {
	if err := p.in.Encode(cmd); err != nil {
		return loadEvent{}, err
	}
	return p.await(ctx, want)
}

func (p *loadProc) await(ctx context.Context, want string) (loadEvent, error) {
	e, err := p.next(ctx, time.After(2*tapWait))
	if err == nil && e.Event != want {
		err = fmt.Errorf("answered %q, want %q", e.Event, want)
	}
	return e, err
}

// measure lets the connections settle, then reads memory, NATS's traffic
// and every process's descriptors.
func (res *scaleResult) measure(ctx context.Context, cfg *config, ct *clusterTarget, procs []*loadProc, log *slog.Logger) error {
	res.ConnsPerNode = make([]int, cfg.ScaleNodes)
	for _, p := range procs {
		for _, peer := range p.peers {
			res.ConnsPerNode[peer.Node]++
		}
	}
	if err := sleepCtx(ctx, cfg.Settle); err != nil {
		return err
	}
	var err error
	if res.NATSIdle, err = ct.nats.traffic(ctx, cfg.Duration); err != nil {
		return err
	}
	n := float64(cfg.Scale)
	res.NATSPerConn = natsTraffic{Seconds: res.NATSIdle.Seconds,
		InMsgsPerSec:   (res.NATSIdle.InMsgsPerSec - res.NATSBefore.InMsgsPerSec) / n,
		OutMsgsPerSec:  (res.NATSIdle.OutMsgsPerSec - res.NATSBefore.OutMsgsPerSec) / n,
		InBytesPerSec:  (res.NATSIdle.InBytesPerSec - res.NATSBefore.InBytesPerSec) / n,
		OutBytesPerSec: (res.NATSIdle.OutBytesPerSec - res.NATSBefore.OutBytesPerSec) / n}
	if res.NodesRSSBytes, err = rssSum(ct.nodePIDs()); err != nil {
		return err
	}
	if res.NATSRSSBytes, err = rss(ct.natsPID()); err != nil {
		return err
	}
	res.PerConnBytes = float64(res.NodesRSSBytes-res.NodesRSSBeforeBytes) / n
	res.NATSPerConnBytes = float64(res.NATSRSSBytes-res.NATSRSSBeforeBytes) / n
	count := func(role string, pid int) {
		if k, err := countFDs(pid); err == nil {
			res.MaxFDs[role] = max(res.MaxFDs[role], k)
		}
	}
	for _, pid := range ct.nodePIDs() {
		count("node", pid)
	}
	for _, p := range procs {
		count("load", p.proc.cmd.Process.Pid)
		r, _ := rss(p.proc.cmd.Process.Pid)
		res.LoadRSSBytes += r
	}
	count("nats", ct.natsPID())
	count("bench", os.Getpid())
	log.Info("scale: idle", slog.Int64("nodes_rss_kib", res.NodesRSSBytes>>10),
		slog.Float64("per_conn_kib", round(res.PerConnBytes/1024, 2)), slog.Any("nats_per_conn", res.NATSPerConn),
		slog.Any("max_fds", res.MaxFDs))
	return nil
}

// signal sends cfg.ScaleSignals signals, each between two random peers on
// different nodes that join a room of their own first, and asserts that
// each is delivered.
func (res *scaleResult) signal(ctx context.Context, cfg *config, procs []*loadProc, log *slog.Logger) error {
	type pick struct {
		p *loadProc
		i int
	}
	random := func() pick {
		p := procs[rand.IntN(len(procs))]
		return pick{p, rand.IntN(len(p.peers))}
	}
	for k := range cfg.ScaleSignals {
		a := random()
		b := random()
		for b.p.peers[b.i].Node == a.p.peers[a.i].Node {
			b = random()
		}
		pa, pb := a.p.peers[a.i], b.p.peers[b.i]
		room := fmt.Sprintf("bench-scale-%d", k)
		// b joins first; a's join waits until a hears of b (in its
		// joined or a peer-joined after it): a's node then knows that
		// they share the room.
		if _, err := b.p.ask(ctx, loadCommand{Op: "join", Conn: b.i, Room: room}, "joined"); err != nil {
			return fmt.Errorf("signal %d: %s joins: %w", k, pb.ID, err)
		}
		if _, err := a.p.ask(ctx, loadCommand{Op: "join", Conn: a.i, Room: room, Peer: pb.ID}, "joined"); err != nil {
			return fmt.Errorf("signal %d: %s joins: %w", k, pa.ID, err)
		}
		if _, err := b.p.ask(ctx, loadCommand{Op: "expect", Conn: b.i, Peer: pa.ID}, "expecting"); err != nil {
			return fmt.Errorf("signal %d: %w", k, err)
		}
		got, err := sendAndReceive(ctx, a.p, b.p, loadCommand{Op: "send", Conn: a.i, Peer: pb.ID})
		if err != nil {
			return fmt.Errorf("signal %d from %s (node %d) to %s (node %d): %w", k, pa.ID, pa.Node, pb.ID, pb.Node, err)
		}
		s := scaleSignal{From: pa.ID, To: pb.ID, FromNode: pa.Node, ToNode: pb.Node, Ms: got.Ms}
		res.Signals = append(res.Signals, s)
		log.Info("scale: signal delivered", slog.Any("signal", s))
	}
	return nil
}

// sendAndReceive has from send a signal and returns to's "received". When
// one load process holds both peers, its "sent" and "received" may come
// in either order (the receiving side answers from its own goroutine).
func sendAndReceive(ctx context.Context, from, to *loadProc, send loadCommand) (loadEvent, error) {
	if from != to {
		if _, err := from.ask(ctx, send, "sent"); err != nil {
			return loadEvent{}, fmt.Errorf("send: %w", err)
		}
		return to.await(ctx, "received")
	}
	if err := from.in.Encode(send); err != nil {
		return loadEvent{}, err
	}
	var got loadEvent
	seen := map[string]bool{}
	for !seen["sent"] || !seen["received"] {
		e, err := from.next(ctx, time.After(2*tapWait))
		if err != nil {
			return loadEvent{}, err
		}
		if (e.Event != "sent" && e.Event != "received") || seen[e.Event] {
			return loadEvent{}, fmt.Errorf("answered %q, want sent and received", e.Event)
		}
		seen[e.Event] = true
		if e.Event == "received" {
			got = e
		}
	}
	return got, nil
}

// collectStats sums what the load processes' connections saw, and fails
// if any was dropped or refused.
func (res *scaleResult) collectStats(procs []*loadProc) error {
	res.Stats.Errors = map[string]int64{}
	var errs []error
	for i, p := range procs {
		e, err := p.ask(context.Background(), loadCommand{Op: "stats"}, "stats")
		if err != nil || e.Stats == nil {
			errs = append(errs, fmt.Errorf("load process %d stats: %w", i, err))
			continue
		}
		res.Stats.Received += e.Stats.Received
		res.Stats.Dropped += e.Stats.Dropped
		res.Stats.HeartbeatErrors += e.Stats.HeartbeatErrors
		res.Stats.Refused += e.Stats.Refused
		for k, v := range e.Stats.Errors {
			res.Stats.Errors[k] += v
		}
	}
	if res.Stats.Dropped > 0 || res.Stats.HeartbeatErrors > 0 || len(res.Stats.Errors) > 0 {
		errs = append(errs, fmt.Errorf("idle connections: %d dropped, %d heartbeat errors, errors %v",
			res.Stats.Dropped, res.Stats.HeartbeatErrors, res.Stats.Errors))
	}
	return errors.Join(errs...)
}

// countFDs counts process pid's open descriptors.
func countFDs(pid int) (int, error) {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(es), err
}

// table prints the scale run's figures.
func (res *scaleResult) table(w io.Writer) {
	kib := func(b float64) string { return fmt.Sprintf("%.2f", b/1024) }
	mib := func(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }
	fmt.Fprintf(w, "\n== scale: %d idle connections over %d nodes, %d load processes\n", res.Conns, res.Nodes, res.Procs)
	fmt.Fprintf(w, "connections per node: %v, opened in %.1f s, a heartbeat each every %.0f s\n", res.ConnsPerNode, res.OpenSeconds, res.Heartbeat)
	fmt.Fprintf(w, "nodes' RSS: %s MiB (before %s): %s KiB/conn\n", mib(res.NodesRSSBytes), mib(res.NodesRSSBeforeBytes), kib(res.PerConnBytes))
	fmt.Fprintf(w, "NATS RSS: %s MiB (before %s): %s KiB/conn\n", mib(res.NATSRSSBytes), mib(res.NATSRSSBeforeBytes), kib(res.NATSPerConnBytes))
	fmt.Fprintf(w, "load processes' RSS: %s MiB\n", mib(res.LoadRSSBytes))
	for _, row := range []struct {
		label string
		t     natsTraffic
	}{{"NATS traffic, no connection", res.NATSBefore}, {"NATS traffic, all idle", res.NATSIdle}, {"NATS traffic per idle connection", res.NATSPerConn}} {
		fmt.Fprintf(w, "%s: in %.4g msgs/s, %.4g B/s; out %.4g msgs/s, %.4g B/s (over %.0f s)\n", row.label,
			row.t.InMsgsPerSec, row.t.InBytesPerSec, row.t.OutMsgsPerSec, row.t.OutBytesPerSec, row.t.Seconds)
	}
	fmt.Fprintf(w, "most descriptors held: %v (limit %d)\n", res.MaxFDs, res.FDLimit)
	for _, s := range res.Signals {
		fmt.Fprintf(w, "signal %s (node %d) -> %s (node %d): delivered in %.2f ms\n", s.From, s.FromNode, s.To, s.ToNode, s.Ms)
	}
	fmt.Fprintf(w, "idle connections: %d messages in, %d dropped, %d heartbeat errors, errors %v; %d rounds of dials refused for now (503) and retried\n",
		res.Stats.Received, res.Stats.Dropped, res.Stats.HeartbeatErrors, res.Stats.Errors, res.Stats.Refused)
}
