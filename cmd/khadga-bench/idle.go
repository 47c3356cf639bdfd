//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// idleConns holds the idle phase's connections, reads and discards what
// the server sends (pongs, and with presence on the presence list and its
// changes), counting error answers by code, and sends each connection a
// heartbeat once a period, spread evenly.
type idleConns struct {
	mu       sync.Mutex
	conns    []*benchConn
	received atomic.Int64
	bytes    atomic.Int64
	presence atomic.Int64
	listed   atomic.Int64 // connections that have read a presence message
	dropped  atomic.Int64
	hbErrors atomic.Int64
	refused  atomic.Int64 // rounds of dials refused for now and retried (loadStats.Refused)
	errCodes sync.Map     // code -> *atomic.Int64
	readers  sync.WaitGroup
}

func (ic *idleConns) add(cs []*benchConn) {
	for _, c := range cs {
		ic.readers.Add(1)
		go func() {
			defer ic.readers.Done()
			ic.read(c)
		}()
	}
	ic.mu.Lock()
	ic.conns = append(ic.conns, cs...)
	ic.mu.Unlock()
}

// read reads c until it closes, as any client would: one message at a time.
func (ic *idleConns) read(c *benchConn) {
	listed := false
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			if !isClosed(err) {
				ic.dropped.Add(1)
			}
			return
		}
		ic.received.Add(1)
		ic.bytes.Add(int64(len(b)))
		if tap := c.tap.Load(); tap != nil {
			select {
			case *tap <- b:
			default:
			}
		}
		typ := msgType(b)
		if typ == "presence" {
			ic.presence.Add(1)
			if !listed {
				listed = true
				ic.listed.Add(1)
			}
		}
		if isErrorType(typ) {
			v, _ := ic.errCodes.LoadOrStore(errCode(b, typ), new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
		}
	}
}

func (ic *idleConns) errors() map[string]int64 {
	out := map[string]int64{}
	ic.errCodes.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
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
// heartbeats for cfg.Settle, and reads the server's RSS (a cluster's: the
// sum over its nodes, and its NATS server's apart).
func idlePhase(ctx context.Context, cfg *config, t target, log *slog.Logger) ([]idleResult, error) {
	pids, nats := serverPIDs(t)
	if len(pids) == 0 {
		return nil, errors.New("server pid unknown (pass -pid with -url); memory not measured")
	}
	base, err := stableRSS(ctx, pids...)
	if err != nil {
		return nil, err
	}
	var natsBase int64
	if nats > 0 {
		if natsBase, err = rss(nats); err != nil {
			return nil, err
		}
	}
	log.Info("idle: baseline", slog.Int64("rss_kib", base>>10), slog.Int64("nats_rss_kib", natsBase>>10))
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
		if t.presence() {
			if err := ic.awaitPresence(ctx, n); err != nil {
				return out, err
			}
		}
		if err := sleepCtx(ctx, cfg.Settle); err != nil {
			return out, err
		}
		r, err := rssSum(pids)
		if err != nil {
			return out, err
		}
		res := ic.result(n, base, r, out)
		res.OpenSeconds = opened.Seconds()
		if nats > 0 {
			if res.NATSRSSBytes, err = rss(nats); err != nil {
				return out, err
			}
			res.Nodes, res.NATSRSSBeforeBytes = len(pids), natsBase
			res.NATSPerConnBytes = float64(res.NATSRSSBytes-natsBase) / float64(n)
		}
		out = append(out, res)
		log.Info("idle", slog.Int("conns", n), slog.Int64("rss_kib", r>>10),
			slog.Float64("per_conn_kib", round(res.PerConnBytes/1024, 2)), slog.Int64("received", res.Received),
			slog.Int64("dropped", res.Dropped), slog.Any("errors", res.Errors))
	}
	return out, nil
}

// presenceWait bounds the wait for every idle connection's presence list.
const presenceWait = 60 * time.Second

// awaitPresence waits until all n connections have read a presence
// message, so that the memory is read with the feed running everywhere
// even at a short -settle.
func (ic *idleConns) awaitPresence(ctx context.Context, n int) error {
	deadline := time.Now().Add(presenceWait)
	for ic.listed.Load() < int64(n) {
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v, %d of %d connections have had a presence list", presenceWait, ic.listed.Load(), n)
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// result is the figure at n connections: RSS r against the baseline and
// against the previous count in prev.
func (ic *idleConns) result(n int, base, r int64, prev []idleResult) idleResult {
	prevN, prevRSS := 0, base
	if len(prev) > 0 {
		prevN, prevRSS = prev[len(prev)-1].Conns, prev[len(prev)-1].RSSBytes
	}
	return idleResult{
		Conns: n, RSSBeforeBytes: base, RSSBytes: r,
		PerConnBytes:  float64(r-base) / float64(n),
		MarginalBytes: float64(r-prevRSS) / float64(n-prevN),
		Received:      ic.received.Load(), ReceivedBytes: ic.bytes.Load(), Presence: ic.presence.Load(),
		Dropped: ic.dropped.Load(), HeartbeatErrors: ic.hbErrors.Load(),
		Errors: ic.errors(),
	}
}

// stableRSS waits until the servers' RSS (summed) stops falling (a Go
// server hands freed memory, say argon2's from the logins, back to the OS
// over a few seconds) and returns it. It waits at most 30 s.
func stableRSS(ctx context.Context, pids ...int) (int64, error) {
	last, err := rssSum(pids)
	if err != nil {
		return 0, err
	}
	steady := 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && steady < 6; {
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return 0, err
		}
		r, err := rssSum(pids)
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
