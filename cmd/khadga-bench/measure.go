package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
)

// benchTarget is one running target and what it measured so far.
type benchTarget struct {
	name string
	t    target
	log  *slog.Logger
	res  *targetResult
	errs []error
}

func (b *benchTarget) fail(phase string, err error) {
	b.log.Error("phase failed", slog.String("phase", phase), slog.Any("err", err))
	if prev, ok := b.res.Errors[phase]; ok {
		b.res.Errors[phase] = prev + "; " + err.Error()
	} else {
		b.res.Errors[phase] = err.Error()
	}
	b.errs = append(b.errs, fmt.Errorf("%s: %s: %w", b.name, phase, err))
}

// measure starts every named target, then runs each phase on all of them
// before the next phase: the two servers' figures for a phase are taken
// seconds apart, not minutes, which matters on a shared, noisy machine.
// The open and relay phases run cfg.Rounds times, alternating which target
// goes first; the summary figures are medians. A failed phase is recorded
// and the next one still runs.
func measure(ctx context.Context, cfg *config, names []string, log *slog.Logger) (map[string]*targetResult, error) {
	var bts []*benchTarget
	var errs []error
	defer func() {
		for _, b := range bts {
			if err := b.t.close(); err != nil {
				b.log.Warn("server exit", slog.Any("err", err))
			}
		}
	}()
	for _, name := range names {
		l := log.With(slog.String("target", name))
		t, err := startTarget(ctx, cfg, name, l)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		checkNoFile(l, t.pid(), cfg.maxConns())
		bts = append(bts, &benchTarget{name: name, t: t, log: l, res: &targetResult{PID: t.pid(), Errors: map[string]string{}}})
	}
	if cfg.Phases["idle"] {
		for _, b := range bts {
			var err error
			if b.res.Idle, err = idlePhase(ctx, cfg, b.t, b.log); err != nil {
				b.fail("idle", err)
			}
		}
	}
	for round := range cfg.Rounds {
		order := slices.Clone(bts)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, b := range order {
			runRound(ctx, cfg, b)
		}
	}
	out := map[string]*targetResult{}
	for _, b := range bts {
		b.res.summarize()
		out[b.name] = b.res
		errs = append(errs, b.errs...)
	}
	return out, errors.Join(errs...)
}

// runRound runs one round of the open and relay phases on b.
func runRound(ctx context.Context, cfg *config, b *benchTarget) {
	if cfg.Phases["open"] && ctx.Err() == nil {
		if r, err := openPhase(ctx, cfg, b.t, b.log); err != nil {
			b.fail("open", err)
		} else {
			b.res.OpenRounds = append(b.res.OpenRounds, r)
		}
	}
	if cfg.Phases["relay-max"] && ctx.Err() == nil {
		if r, err := relayPhase(ctx, cfg, b.t, 0, b.log); err != nil {
			b.fail("relay-max", err)
		} else {
			b.res.RelayMaxRounds = append(b.res.RelayMaxRounds, r)
		}
	}
	if cfg.Phases["relay-rate"] && ctx.Err() == nil {
		if r, err := relayPhase(ctx, cfg, b.t, cfg.Rate, b.log); err != nil {
			b.fail("relay-rate", err)
		} else {
			b.res.RelayRateRounds = append(b.res.RelayRateRounds, r)
		}
	}
}

func startTarget(ctx context.Context, cfg *config, name string, log *slog.Logger) (target, error) {
	if name == "khadga" {
		return startKhadga(ctx, cfg, log)
	}
	return startPeerJS(ctx, cfg, log)
}

// measureTarget measures one target alone.
func measureTarget(ctx context.Context, cfg *config, name string, log *slog.Logger) (*targetResult, error) {
	res, err := measure(ctx, cfg, []string{name}, log)
	return res[name], err
}

// maxConns is the most connections the run holds at once.
func (c *config) maxConns() int {
	n := max(c.Open, 2*c.Pairs)
	if len(c.Idle) > 0 && c.Phases["idle"] {
		n = max(n, c.Idle[len(c.Idle)-1])
	}
	return n
}

// summarize sets the summary figures to the medians of the rounds.
func (r *targetResult) summarize() {
	if len(r.OpenRounds) > 0 {
		o := *r.OpenRounds[0]
		o.Seconds = median(r.OpenRounds, func(x *openResult) float64 { return x.Seconds })
		o.PerSecond = median(r.OpenRounds, func(x *openResult) float64 { return x.PerSecond })
		r.Open = &o
	}
	r.RelayMax = relayMedian(r.RelayMaxRounds)
	r.RelayRate = relayMedian(r.RelayRateRounds)
}

func relayMedian(rounds []*relayResult) *relayResult {
	if len(rounds) == 0 {
		return nil
	}
	m := *rounds[0]
	f := func(get func(*relayResult) float64) float64 { return median(rounds, get) }
	m.PerSecond = f(func(x *relayResult) float64 { return x.PerSecond })
	m.P50ms = f(func(x *relayResult) float64 { return x.P50ms })
	m.P99ms = f(func(x *relayResult) float64 { return x.P99ms })
	m.P999ms = f(func(x *relayResult) float64 { return x.P999ms })
	m.Maxms = f(func(x *relayResult) float64 { return x.Maxms })
	m.ServerCPUCores = f(func(x *relayResult) float64 { return x.ServerCPUCores })
	m.ServerCPUMicrosPerSignal = f(func(x *relayResult) float64 { return x.ServerCPUMicrosPerSignal })
	m.ClientCPUCores = f(func(x *relayResult) float64 { return x.ClientCPUCores })
	m.ServerReadsPerSignal = f(func(x *relayResult) float64 { return x.ServerReadsPerSignal })
	m.ServerWritesPerSignal = f(func(x *relayResult) float64 { return x.ServerWritesPerSignal })
	m.Sent, m.Received, m.Samples, m.Dropped = 0, 0, 0, 0
	m.Errors = map[string]int64{}
	for _, x := range rounds {
		m.Sent += x.Sent
		m.Received += x.Received
		m.Samples += x.Samples
		m.Dropped += x.Dropped
		for k, v := range x.Errors {
			m.Errors[k] += v
		}
	}
	m.Rounds = len(rounds)
	return &m
}

// median returns the median of get over xs (the mean of the middle two for
// an even count).
func median[T any](xs []T, get func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = get(x)
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return round((v[n/2-1]+v[n/2])/2, 3)
}
