//go:build linux

// The soak run (-soak D): a fixed population of clients churning as users
// do, for D, against one node and, with -cluster N, against N nodes on
// NATS; the servers are sampled every -soak-every, and after the last
// client closes they must settle back to the baseline taken after a
// warm-up. A server that leaks a goroutine, a descriptor or a map entry
// per session shows no error in a minute-long test; it shows here as a
// slope, or as a settle that does not come.

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// soakRooms is how many clients share a room on average, as rooms are
// named soak-0 … soak-(clients/soakRoomShare): small groups, as people
// meet.
const soakRoomShare = 8

// soakFlags registers the soak run's flags.
func soakFlags(fs *flag.FlagSet, cfg *config) {
	fs.DurationVar(&cfg.Soak, "soak", 0, "instead of the phases: churn -soak-clients clients for this long against one node (and a -cluster, if given), sample the servers every -soak-every, then check that they settle back to their baseline (0: off)")
	fs.IntVar(&cfg.SoakClients, "soak-clients", 300, "clients of the soak run")
	fs.Float64Var(&cfg.SoakRate, "soak-rate", 200, "operations/s of the soak run's clients, all together")
	fs.DurationVar(&cfg.SoakEvery, "soak-every", 30*time.Second, "the soak run's sampling interval")
	fs.DurationVar(&cfg.SoakWarmup, "soak-warmup", time.Minute, "churn before the soak run's baseline, which is taken with every client closed")
	fs.BoolVar(&cfg.SoakSingle, "soak-single", true, "soak the single node; -soak-single=false with -cluster soaks only the cluster")
	fs.DurationVar(&cfg.SoakSettle, "soak-settle", 2*time.Minute, "how long the servers may take to settle once the soak run's clients have closed (more than the resume window: an abandoned session waits that long)")
}

// validateSoak checks the soak flags.
func (c *config) validateSoak() error {
	var errs []error
	if c.Soak < 0 {
		errs = append(errs, errors.New("-soak must be 0 (off) or a positive duration"))
	}
	if c.Soak > 0 && (c.URL != "" || c.Scale > 0 || c.Target == namePeerJS) {
		errs = append(errs, errors.New("-soak is a run of its own on servers it starts: not with -url, -scale or -target peerjs"))
	}
	if c.Soak > 0 && !c.SoakSingle && c.Cluster == 0 {
		errs = append(errs, errors.New("-soak-single=false soaks only the cluster: it needs -cluster"))
	}
	if c.SoakClients < 2 || c.SoakRate <= 0 || c.SoakEvery <= 0 || c.SoakWarmup < 0 || c.SoakSettle <= 0 {
		errs = append(errs, errors.New("-soak-clients must be at least 2, -soak-rate, -soak-every and -soak-settle positive, -soak-warmup not negative"))
	}
	return errors.Join(errs...)
}

// tokenTTL is the lifetime of the tokens the bench mints: a soak run's
// clients present theirs on every dial and resume to its end.
func (c *config) tokenTTL() time.Duration {
	return min(max(2*time.Hour, c.Soak+c.SoakWarmup+time.Hour), 720*time.Hour)
}

// soakTarget is the servers of one soak: one node, or a cluster's nodes
// and its NATS server.
type soakTarget struct {
	name  string
	nodes []*khadgaTarget
	nats  *natsServer // nil for the single node
	stop  func() error
	// metrics reads /metrics without keep-alive: an idle connection kept
	// by the bench would hold a goroutine and a descriptor in the server
	// that the settle check would count.
	metrics *http.Client
	// low, while the clients churn, keeps the heap's low water between
	// samples.
	low *heapLow
}

// startSoakTarget starts the single node (cluster 0) or a cluster, with
// the presence feed on every connection, as the web app opens it.
func startSoakTarget(ctx context.Context, cfg *config, env *runEnv, cl *client, cluster int, log *slog.Logger) (*soakTarget, error) {
	st := &soakTarget{metrics: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	if cluster == 0 {
		k, err := startKhadga(ctx, cfg, env, cl, true, log)
		if err != nil {
			return nil, err
		}
		st.name, st.nodes, st.stop = nameKhadga, []*khadgaTarget{k}, k.close
		return st, nil
	}
	ct, err := startCluster(ctx, cfg, env, cl, cluster, true, log)
	if err != nil {
		return nil, err
	}
	st.name, st.nodes, st.nats, st.stop = nameCluster, ct.nodes, ct.nats, ct.close
	return st, nil
}

// soakRun soaks the single node (unless -soak-single=false with a
// cluster), then the cluster if -cluster is given, each on fresh servers.
func soakRun(ctx context.Context, cfg *config, env *runEnv, log *slog.Logger) (*soakResult, error) {
	res := &soakResult{}
	var errs []error
	var clusters []int
	if cfg.SoakSingle {
		clusters = append(clusters, 0)
	}
	if cfg.Cluster > 0 {
		clusters = append(clusters, cfg.Cluster)
	}
	for _, n := range clusters {
		if ctx.Err() != nil {
			break
		}
		r, err := soakOne(ctx, cfg, env, n, log)
		if r != nil {
			res.Targets = append(res.Targets, r)
		}
		errs = append(errs, err)
	}
	res.verdict()
	if !res.Pass {
		errs = append(errs, errors.New(res.Verdict))
	}
	return res, errors.Join(errs...)
}

// soakOne is one soak on fresh servers: warm-up, baseline, churn with
// samples, close, settle.
func soakOne(ctx context.Context, cfg *config, env *runEnv, cluster int, log *slog.Logger) (*soakTargetResult, error) {
	cl := newClient(combo{Scheme: schemeWS, Client: clientPlain}, nil)
	defer cl.close()
	st, err := startSoakTarget(ctx, cfg, env, cl, cluster, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := st.stop(); err != nil {
			log.Warn("stopping the servers", slog.Any("err", err))
		}
	}()
	log = log.With(slog.String("target", st.name))
	res := &soakTargetResult{Name: st.name, Nodes: len(st.nodes), Clients: cfg.SoakClients, Rate: cfg.SoakRate,
		Seconds: cfg.Soak.Seconds(), WarmupSeconds: cfg.SoakWarmup.Seconds(), EverySeconds: cfg.SoakEvery.Seconds()}
	if cfg.SoakWarmup > 0 {
		log.Info("soak: warming up", slog.Duration("for", cfg.SoakWarmup))
		warm := newSoakPop(st, cl, cfg, log)
		warm.churn(ctx, cfg.SoakWarmup, nil)
		res.Warmup = warm.stats.snapshot()
	}
	if res.Baseline, err = st.baseline(ctx, cfg.SoakSettle); err != nil {
		return res, fmt.Errorf("%s: baseline: %w", st.name, err)
	}
	log.Info("soak: baseline", slog.Any("sample", res.Baseline.nodeFigures))
	pop := newSoakPop(st, cl, cfg, log)
	watch, stopWatch := context.WithCancel(ctx)
	st.low = st.watchHeap(watch)
	pop.churn(ctx, cfg.Soak, func(at time.Duration) {
		s, err := st.sample(ctx, at, pop.connected())
		if err != nil {
			log.Warn("soak: sample", slog.Any("err", err))
			return
		}
		res.Samples = append(res.Samples, s)
		log.Info("soak: sample", slog.Duration("at", at), slog.Int("connected", s.Connected), slog.Any("sample", s.nodeFigures))
	})
	stopWatch()
	st.low.wait()
	st.low = nil
	res.Ops = pop.stats.snapshot()
	res.Signals = pop.track.result()
	start := time.Now()
	final, left := st.settle(ctx, cfg.Soak, res.Baseline, cfg.SoakSettle)
	res.Final, res.SettleSeconds = final, round(time.Since(start).Seconds(), 1)
	res.judge(cfg, left)
	log.Info("soak: done", slog.Bool("settled", res.Settled),
		slog.Any("final", res.Final.nodeFigures), slog.Any("failures", res.Failures))
	return res, ctx.Err()
}
