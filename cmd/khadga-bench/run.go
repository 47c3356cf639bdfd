//go:build linux

package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// runEnv is what every combination of a run shares.
type runEnv struct {
	dir     string         // temp dir: the binary, the certificate, the servers' dirs
	bin     string         // the khadga binary to start
	natsBin string         // the nats-server binary, for -cluster and -scale
	cert    *benchCert     // nil without wss
	roots   *x509.CertPool // what the clients trust for wss
}

// prepare builds khadga once for the whole run (unless -server-bin or
// -url) and, for wss, makes the certificate.
func prepare(ctx context.Context, cfg *config, log *slog.Logger) (*runEnv, error) {
	dir, err := os.MkdirTemp("", "khadga-bench-")
	if err != nil {
		return nil, err
	}
	env := &runEnv{dir: dir, bin: cfg.ServerBin, natsBin: cfg.NATSBin}
	if cfg.URL == "" && cfg.Target != namePeerJS && env.bin == "" {
		env.bin = filepath.Join(dir, "khadga")
		if err := buildKhadga(ctx, env.bin, log); err != nil {
			env.close()
			return nil, err
		}
	}
	if (cfg.Cluster > 0 || cfg.Scale > 0) && env.natsBin == "" {
		env.natsBin = filepath.Join(dir, "nats-server")
		if err := buildNATS(ctx, env.natsBin, log); err != nil {
			env.close()
			return nil, err
		}
	}
	if slices.Contains(cfg.Schemes, schemeWSS) {
		if env.cert, err = writeBenchCert(dir, time.Now()); err != nil {
			env.close()
			return nil, err
		}
		env.roots = env.cert.roots(cfg.URL != "")
	}
	return env, nil
}

func (e *runEnv) close() { os.RemoveAll(e.dir) }

// run measures every combination of scheme and client in turn, each with
// fresh servers. A failed phase is recorded in the report and the run goes
// on, so that one limit does not hide the other figures.
func run(ctx context.Context, cfg *config, log *slog.Logger) (*report, error) {
	raiseNoFile(log)
	env, err := prepare(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	defer env.close()
	rep := newReport(cfg)
	defer func() { rep.Machine.LoadAvg[1] = loadAvg() }()
	if cfg.Scale > 0 {
		rep.Scale, err = scaleRun(ctx, cfg, env, log)
		return rep, err
	}
	if cfg.Soak > 0 {
		rep.Soak, err = soakRun(ctx, cfg, env, log)
		return rep, err
	}
	var errs []error
	for _, cb := range cfg.combos() {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		res, err := measureCombo(ctx, cfg, env, cb, log.With(slog.String("combo", cb.String())))
		rep.Runs = append(rep.Runs, res)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", cb, err))
		}
	}
	return rep, errors.Join(errs...)
}

// benchTarget is one running target and what it measured so far.
type benchTarget struct {
	name     string
	t        target
	idleOnly bool // khadga-idle: the idle phase only
	stopped  bool
	log      *slog.Logger
	res      *targetResult
	errs     []error
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

// stop stops the target's server, once.
func (b *benchTarget) stop() {
	if b.stopped {
		return
	}
	b.stopped = true
	if err := b.t.close(); err != nil {
		b.log.Warn("server exit", slog.Any("err", err))
	}
}

// measureCombo starts every target for cb, then runs each phase on all of
// them before the next phase: the servers' figures for a phase are taken
// seconds apart, not minutes, which matters on a shared, noisy machine.
// The open and relay phases run cfg.Rounds times, alternating which target
// goes first; the summary figures are medians. A failed phase is recorded
// and the next one still runs.
func measureCombo(ctx context.Context, cfg *config, env *runEnv, cb combo, log *slog.Logger) (*comboResult, error) {
	cl := newClient(cb, env.roots)
	defer cl.close()
	res := &comboResult{combo: cb, Targets: map[string]*targetResult{}}
	var bts []*benchTarget
	var errs []error
	defer func() {
		for _, b := range bts {
			b.stop()
		}
	}()
	for _, name := range cfg.targetNames() {
		l := log.With(slog.String("target", name))
		t, err := startTarget(ctx, cfg, env, cl, name, l)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		checkNoFile(l, t.pid(), cfg.maxConns())
		b := &benchTarget{name: name, t: t, idleOnly: name == nameKhadgaIdle, log: l,
			res: &targetResult{PID: t.pid(), Presence: t.presence(), Errors: map[string]string{}}}
		if b.idleOnly && cfg.URL != "" {
			b.res.Note = "the -url server, after khadga's idle phase: its baseline is not a fresh process's"
		}
		bts = append(bts, b)
		res.Targets[name] = b.res
	}
	if cfg.Phases["idle"] {
		for _, b := range bts {
			var err error
			if b.res.Idle, err = idlePhase(ctx, cfg, b.t, b.log); err != nil {
				b.fail("idle", err)
			}
		}
	}
	var rounds []*benchTarget
	for _, b := range bts {
		if b.idleOnly {
			b.stop() // its work is done; it would only take memory now
		} else {
			rounds = append(rounds, b)
		}
	}
	for round := range cfg.Rounds {
		order := slices.Clone(rounds)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, b := range order {
			runRound(ctx, cfg, b)
		}
	}
	for _, b := range bts {
		b.res.summarize()
		errs = append(errs, b.errs...)
	}
	res.finish(cfg.Idle[len(cfg.Idle)-1])
	return res, errors.Join(errs...)
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

func startTarget(ctx context.Context, cfg *config, env *runEnv, cl *client, name string, log *slog.Logger) (target, error) {
	switch name {
	case nameKhadga:
		return startKhadga(ctx, cfg, env, cl, cl.presence(), log)
	case nameKhadgaIdle:
		return startKhadga(ctx, cfg, env, cl, !cl.presence(), log)
	case nameCluster:
		return startCluster(ctx, cfg, env, cl, cfg.Cluster, cl.presence(), log)
	}
	return startPeerJS(ctx, cfg, env, cl, log)
}

// maxConns is the most connections the run holds at once.
func (c *config) maxConns() int {
	n := max(c.Open, 2*c.Pairs)
	if len(c.Idle) > 0 && c.Phases["idle"] {
		n = max(n, c.Idle[len(c.Idle)-1])
	}
	return n
}
