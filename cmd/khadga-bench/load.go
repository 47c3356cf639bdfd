package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// dialMany opens n connections with the given number of concurrent dialers.
// On failure it returns the connections it opened and the first error.
func dialMany(ctx context.Context, t target, n, dialers int) ([]*benchConn, error) {
	conns := make([]*benchConn, n)
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr error
	var once sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range min(dialers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := t.dial(ctx)
				if err != nil {
					failed.Add(1)
					once.Do(func() { firstErr = err; cancel() })
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return compact(conns), fmt.Errorf("%d of %d connections failed, first: %w", failed.Load(), n, firstErr)
	}
	return conns, nil
}

func compact(conns []*benchConn) []*benchConn {
	out := conns[:0]
	for _, c := range conns {
		if c != nil {
			out = append(out, c)
		}
	}
	return out
}

// shutAll closes conns in parallel.
func shutAll(conns []*benchConn) {
	var wg sync.WaitGroup
	ch := make(chan *benchConn)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range ch {
				c.shut()
			}
		}()
	}
	for _, c := range conns {
		ch <- c
	}
	close(ch)
	wg.Wait()
}

// openPhase times opening and authenticating cfg.Open connections.
func openPhase(ctx context.Context, cfg *config, t target, log *slog.Logger) (*openResult, error) {
	start := time.Now()
	conns, err := dialMany(ctx, t, cfg.Open, cfg.Dialers)
	d := time.Since(start)
	defer shutAll(conns)
	if err != nil {
		return nil, err
	}
	r := &openResult{Conns: cfg.Open, Dialers: cfg.Dialers, Seconds: d.Seconds(), PerSecond: float64(cfg.Open) / d.Seconds()}
	log.Info("open", slog.Int("conns", r.Conns), slog.Float64("conns_per_s", round(r.PerSecond, 0)))
	return r, nil
}

// idleConns holds the idle phase's connections, reads and discards what
// the server sends, and sends each a heartbeat once a period, spread evenly.
type idleConns struct {
	mu       sync.Mutex
	conns    []*benchConn
	received atomic.Int64
	dropped  atomic.Int64
	hbErrors atomic.Int64
	readers  sync.WaitGroup
}

func (ic *idleConns) add(cs []*benchConn) {
	for _, c := range cs {
		ic.readers.Add(1)
		go func() {
			defer ic.readers.Done()
			for {
				_, r, err := c.ws.NextReader()
				if err != nil {
					if !isClosed(err) {
						ic.dropped.Add(1)
					}
					return
				}
				_, _ = io.Copy(io.Discard, r)
				ic.received.Add(1)
			}
		}()
	}
	ic.mu.Lock()
	ic.conns = append(ic.conns, cs...)
	ic.mu.Unlock()
}

// heartbeats runs until ctx ends: every tick it pings the connections whose
// slot is due, so each gets one heartbeat per period.
func (ic *idleConns) heartbeats(ctx context.Context, frame []byte, period time.Duration) {
	const slots = 50
	tick := time.NewTicker(period / slots)
	defer tick.Stop()
	for slot := 0; ; slot = (slot + 1) % slots {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ic.mu.Lock()
		conns := ic.conns
		ic.mu.Unlock()
		for i := slot; i < len(conns); i += slots {
			if err := conns[i].write(frame); err != nil {
				ic.hbErrors.Add(1)
			}
		}
	}
}

// idlePhase opens connections up to each count, lets them idle with
// heartbeats for cfg.Settle, and reads the server's RSS.
func idlePhase(ctx context.Context, cfg *config, t target, log *slog.Logger) ([]idleResult, error) {
	pid := t.pid()
	if pid == 0 {
		return nil, errors.New("server pid unknown (pass -pid with -url); memory not measured")
	}
	base, err := stableRSS(ctx, pid)
	if err != nil {
		return nil, err
	}
	log.Info("idle: baseline", slog.Int64("rss_kib", base>>10))
	ic := &idleConns{}
	hbCtx, stopHB := context.WithCancel(ctx)
	var hbDone sync.WaitGroup
	hbDone.Add(1)
	go func() { defer hbDone.Done(); ic.heartbeats(hbCtx, t.heartbeat(), cfg.Heartbeat) }()
	defer func() {
		stopHB()
		hbDone.Wait()
		shutAll(ic.conns)
		ic.readers.Wait()
	}()
	var out []idleResult
	for _, n := range cfg.Idle {
		start := time.Now()
		cs, err := dialMany(ctx, t, n-len(ic.conns), cfg.Dialers)
		ic.add(cs)
		if err != nil {
			return out, fmt.Errorf("at %d connections: %w", len(ic.conns), err)
		}
		opened := time.Since(start)
		if err := sleepCtx(ctx, cfg.Settle); err != nil {
			return out, err
		}
		r, err := rss(pid)
		if err != nil {
			return out, err
		}
		prevN, prevRSS := 0, base
		if len(out) > 0 {
			prevN, prevRSS = out[len(out)-1].Conns, out[len(out)-1].RSSBytes
		}
		res := idleResult{
			Conns: n, RSSBeforeBytes: base, RSSBytes: r,
			PerConnBytes:  float64(r-base) / float64(n),
			MarginalBytes: float64(r-prevRSS) / float64(n-prevN),
			OpenSeconds:   opened.Seconds(),
			Dropped:       ic.dropped.Load(), HeartbeatErrors: ic.hbErrors.Load(),
			Received: ic.received.Load(),
		}
		out = append(out, res)
		log.Info("idle", slog.Int("conns", n), slog.Int64("rss_kib", r>>10),
			slog.Float64("per_conn_kib", round(res.PerConnBytes/1024, 2)), slog.Int64("dropped", res.Dropped))
	}
	return out, nil
}

// stableRSS waits until the server's RSS stops falling (a Go server hands
// freed memory, say argon2's from the logins, back to the OS over a few
// seconds) and returns it. It waits at most 30 s.
func stableRSS(ctx context.Context, pid int) (int64, error) {
	last, err := rss(pid)
	if err != nil {
		return 0, err
	}
	steady := 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && steady < 6; {
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return 0, err
		}
		r, err := rss(pid)
		if err != nil {
			return 0, err
		}
		if r < last-last/100 {
			steady = 0
		} else {
			steady++
		}
		last = r
	}
	return last, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
