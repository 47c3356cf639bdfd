//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/khadga/khadga/internal/rawsock"
)

// drainWait is how long the bench waits, after the senders stop, for
// signals still in flight.
const drainWait = 2 * time.Second

// relayPeer is one connection of a pair in a relay phase: it sends to its
// partner and records the latency of what it receives.
type relayPeer struct {
	c       *benchConn
	partner *relayPeer
	mu      sync.Mutex // guards frame, stamped by the reader and the starter
	frame   *signalFrame
	lat     []int64 // ns, of signals sent after the warm-up, received in time
	count   int64   // signals received inside the measured window
}

// relayRun is the shared state of one relay phase.
type relayRun struct {
	base    time.Time
	warmEnd time.Duration // since base
	end     time.Duration
	// echo (relay-max): a peer answers each signal it receives with one to
	// its partner at once, from its reader, so that each pair keeps
	// -window signals in flight with no hand-off between goroutines.
	echo     bool
	sent     atomic.Int64
	answered atomic.Int64 // signals received or refused, at any time
	closing  atomic.Bool  // the phase is over and the bench closes its connections
	errCodes sync.Map     // code -> *atomic.Int64
	dropped  atomic.Int64
}

func (r *relayRun) countErr(code string) {
	v, _ := r.errCodes.LoadOrStore(code, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// relayPhase opens cfg.Pairs pairs and has them signal for
// cfg.Warmup+cfg.Duration: as fast as they can (rate 0: each pair bounces
// cfg.Window signals back and forth, a new one sent the moment one
// arrives), or at rate signals/s in total, spread evenly over all peers.
func relayPhase(ctx context.Context, cfg *config, t target, rate int, log *slog.Logger) (*relayResult, error) {
	peers, err := openPairs(ctx, cfg, t)
	defer func() {
		for _, p := range peers {
			p.c.shut()
		}
	}()
	if err != nil {
		return nil, err
	}
	run := &relayRun{base: time.Now(), echo: rate == 0}
	run.warmEnd = cfg.Warmup
	run.end = cfg.Warmup + cfg.Duration
	var readers sync.WaitGroup
	for _, p := range peers {
		readers.Add(1)
		go func() { defer readers.Done(); run.read(p) }()
	}
	stop := make(chan struct{})
	var senders sync.WaitGroup
	if rate > 0 {
		for i, p := range peers {
			senders.Add(1)
			go func() { defer senders.Done(); run.sendPaced(p, i, len(peers), rate, stop) }()
		}
	} else {
		for i := 0; i < len(peers); i += 2 {
			for range cfg.Window {
				_ = run.send(peers[i])
			}
		}
	}
	nodes, nats := serverPIDs(t)
	win := run.measureWindow(ctx, nodes, nats)
	close(stop)
	senders.Wait()
	run.drain(ctx)
	run.closing.Store(true)
	for _, p := range peers {
		p.c.shut()
	}
	readers.Wait()
	res := run.result(peers, cfg, rate, win)
	log.Info("relay", slog.String("mode", res.Mode), slog.Float64("signals_per_s", round(res.PerSecond, 0)),
		slog.Float64("p50_ms", res.P50ms), slog.Float64("p99_ms", res.P99ms), slog.Any("errors", res.Errors))
	return res, nil
}

// openPairs dials 2*cfg.Pairs connections and pairs them up, each pair's
// peers on different nodes of a cluster.
func openPairs(ctx context.Context, cfg *config, t target) ([]*relayPeer, error) {
	conns, err := dialMany(ctx, t, 2*cfg.Pairs, cfg.Dialers)
	if err == nil {
		conns = crossNodeOrder(conns)
	}
	peers := make([]*relayPeer, len(conns))
	for i, c := range conns {
		peers[i] = &relayPeer{c: c}
	}
	if err != nil {
		return peers, err
	}
	errs := make(chan error, cfg.Pairs)
	sem := make(chan struct{}, cfg.Dialers)
	for i := 0; i < len(peers); i += 2 {
		a, b := peers[i], peers[i+1]
		a.partner, b.partner = b, a
		a.frame = newSignalFrame(t, b.c.id, cfg.Size)
		b.frame = newSignalFrame(t, a.c.id, cfg.Size)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- t.pair(ctx, a.c, b.c, fmt.Sprintf("bench-pair-%d", i/2))
		}()
	}
	var all []error
	for range cfg.Pairs {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	if len(all) > 0 {
		return peers, fmt.Errorf("%d of %d pairs failed, first: %w", len(all), cfg.Pairs, all[0])
	}
	return peers, nil
}

// window is what the server and this process used in the measured window.
type window struct {
	serverCPU, clientCPU float64 // seconds
	natsCPU              float64 // seconds, of a cluster's NATS server
	serverIO             procIO  // syscalls
}

// measureWindow waits out the phase and samples the server's processes
// (summed; none: unknown), the NATS server (0: none) and this process at
// the start and the end of the measured window.
func (r *relayRun) measureWindow(ctx context.Context, pids []int, nats int) window {
	sample := func() (w window) {
		for _, pid := range pids {
			cpu, _ := cpuSeconds(pid)
			io, _ := readProcIO(pid)
			w.serverCPU += cpu
			w.serverIO.Reads += io.Reads
			w.serverIO.Writes += io.Writes
		}
		if nats > 0 {
			w.natsCPU, _ = cpuSeconds(nats)
		}
		w.clientCPU, _ = cpuSeconds(os.Getpid())
		return w
	}
	_ = sleepCtx(ctx, time.Until(r.base.Add(r.warmEnd)))
	w0 := sample()
	_ = sleepCtx(ctx, time.Until(r.base.Add(r.end)))
	w1 := sample()
	return window{serverCPU: w1.serverCPU - w0.serverCPU, clientCPU: w1.clientCPU - w0.clientCPU,
		natsCPU:  w1.natsCPU - w0.natsCPU,
		serverIO: procIO{Reads: w1.serverIO.Reads - w0.serverIO.Reads, Writes: w1.serverIO.Writes - w0.serverIO.Writes}}
}

// drain waits, at most drainWait, until every signal sent has arrived or
// been refused, so that closing the connections loses none in flight.
func (r *relayRun) drain(ctx context.Context) {
	deadline := time.Now().Add(drainWait)
	for r.answered.Load() < r.sent.Load() && time.Now().Before(deadline) {
		if sleepCtx(ctx, 10*time.Millisecond) != nil {
			return
		}
	}
}

// send sends one signal from p to its partner, stamped now.
func (r *relayRun) send(p *relayPeer) error {
	// Counted before the write, so that drain waits for a send in progress.
	r.sent.Add(1)
	p.mu.Lock()
	err := p.c.write(p.frame.stamp(int64(time.Since(r.base))))
	p.mu.Unlock()
	if err != nil {
		r.sent.Add(-1)
		// The bench closing its own connections is not a failure.
		if !r.closing.Load() {
			r.countErr("write: " + errText(err))
		}
		return err
	}
	return nil
}

// sendPaced sends one signal every n/rate seconds, peer i offset by its
// share of that interval so that the senders do not fire together. A late
// sender catches up rather than skipping, so the offered rate holds.
func (r *relayRun) sendPaced(p *relayPeer, i, n, rate int, stop <-chan struct{}) {
	interval := time.Duration(n) * time.Second / time.Duration(rate)
	next := time.Duration(i) * interval / time.Duration(n)
	timer := time.NewTimer(time.Until(r.base.Add(next)))
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
		case <-stop:
			return
		}
		if r.send(p) != nil {
			return
		}
		next += interval
		timer.Reset(time.Until(r.base.Add(next)))
	}
}

// read handles everything the server sends to p until the connection
// closes, as p's client reads (see client.go): the plain client with
// gorilla's ReadMessage, the tuned one with its own frame reader over ws
// and with gorilla's NextReader into one reused buffer over wss.
func (r *relayRun) read(p *relayPeer) {
	if p.c.plain {
		for {
			_, b, err := p.c.ws.ReadMessage()
			if err != nil {
				r.ended(err)
				return
			}
			r.handle(p, b)
		}
	}
	if rc, ok := p.c.ws.NetConn().(*rawsock.Conn); ok {
		r.readRaw(p, rc)
		return
	}
	var buf bytes.Buffer
	for {
		_, rd, err := p.c.ws.NextReader()
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(rd)
		}
		if err != nil {
			r.ended(err)
			return
		}
		r.handle(p, buf.Bytes())
	}
}

// ended counts a connection that the server, not the bench, ended.
func (r *relayRun) ended(err error) {
	if !isClosed(err) && !r.closing.Load() {
		r.dropped.Add(1)
	}
}

// handle takes one message from the server to p.
func (r *relayRun) handle(p *relayPeer, b []byte) {
	now := time.Since(r.base)
	switch typ := msgType(b); {
	case typ == "signal" || typ == "OFFER":
		r.answered.Add(1)
		if r.echo && now < r.end {
			_ = r.send(p)
		}
		sentAt, ok := readStamp(b)
		if !ok {
			r.countErr("bad payload")
			return
		}
		if now >= r.warmEnd && now <= r.end {
			p.count++
			if time.Duration(sentAt) >= r.warmEnd {
				p.lat = append(p.lat, int64(now)-sentAt)
			}
		}
	case isErrorType(typ):
		// A refused signal was this peer's: send another in its place,
		// so that the pair keeps its signals in flight.
		r.answered.Add(1)
		if r.echo && now < r.end {
			_ = r.send(p)
		}
		r.countErr(errCode(b, typ))
	}
}

func (r *relayRun) result(peers []*relayPeer, cfg *config, rate int, win window) *relayResult {
	var lat []int64
	var count int64
	for _, p := range peers {
		lat = append(lat, p.lat...)
		count += p.count
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res := &relayResult{
		Mode: "max", Pairs: cfg.Pairs, PayloadBytes: cfg.Size, FrameBytes: len(peers[0].frame.buf),
		Seconds: cfg.Duration.Seconds(), Sent: r.sent.Load(), Received: count,
		PerSecond: float64(count) / cfg.Duration.Seconds(),
		P50ms:     ms(percentile(lat, 0.50)), P99ms: ms(percentile(lat, 0.99)),
		P999ms: ms(percentile(lat, 0.999)), Maxms: ms(percentile(lat, 1)),
		Samples: len(lat), Dropped: r.dropped.Load(), Errors: map[string]int64{},
	}
	if rate > 0 {
		res.Mode, res.OfferedPerSecond = "rate", rate
	} else {
		res.Window = cfg.Window
	}
	res.ClientCPUCores = round(win.clientCPU/cfg.Duration.Seconds(), 2)
	res.NATSCPUCores = round(win.natsCPU/cfg.Duration.Seconds(), 2)
	if cpu := win.serverCPU; cpu > 0 {
		res.ServerCPUCores = round(cpu/cfg.Duration.Seconds(), 2)
		if count > 0 {
			res.ServerCPUMicrosPerSignal = round(cpu*1e6/float64(count), 2)
			res.ServerReadsPerSignal = round(float64(win.serverIO.Reads)/float64(count), 2)
			res.ServerWritesPerSignal = round(float64(win.serverIO.Writes)/float64(count), 2)
		}
	}
	r.errCodes.Range(func(k, v any) bool {
		res.Errors[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return res
}
