//go:build linux

// Opening connections, and the open phase.

package main

import (
	"context"
	"fmt"
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
