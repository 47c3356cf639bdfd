//go:build linux

// The NATS server under a cluster: the real nats-server, as a process.

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// natsServer is one nats-server with JetStream on 127.0.0.1, its own
// process, with its monitoring port open for /varz.
type natsServer struct {
	proc    *process
	url     string // nats://127.0.0.1:PORT
	monitor string // http://127.0.0.1:PORT
	hc      *http.Client
}

// buildNATS builds nats-server from the module cache: the package at the
// root of github.com/nats-io/nats-server/v2, at the version go.mod
// requires, is the nats-server command itself.
func buildNATS(ctx context.Context, out string, log *slog.Logger) error {
	return goBuild(ctx, out, "github.com/nats-io/nats-server/v2", log)
}

// startNATS starts env's nats-server with JetStream, its store in a temp
// dir, and waits until JetStream is up. procs, if positive, is its
// GOMAXPROCS.
func startNATS(ctx context.Context, env *runEnv, procs int, log *slog.Logger) (*natsServer, error) {
	dir, err := os.MkdirTemp(env.dir, "nats-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	mport, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(env.natsBin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-m", strconv.Itoa(mport),
		"-n", "khadga-bench", "-js", "-sd", filepath.Join(dir, "store"))
	cmd.Dir = dir
	setProcs(cmd, procs)
	p, err := startProcess(cmd, dir, log)
	if err != nil {
		return nil, err
	}
	n := &natsServer{proc: p, url: fmt.Sprintf("nats://127.0.0.1:%d", port),
		monitor: fmt.Sprintf("http://127.0.0.1:%d", mport), hc: &http.Client{Timeout: 10 * time.Second}}
	if err := waitHTTP(ctx, n.hc, n.monitor+"/healthz?js-enabled-only=true", p); err != nil {
		tail := p.logTail() // before stop, which removes the log
		_ = p.stop()
		return nil, fmt.Errorf("nats-server did not become ready: %w\n%s", err, tail)
	}
	log.Info("nats-server ready", slog.String("url", n.url), slog.Int("pid", n.pid()))
	return n, nil
}

func (n *natsServer) pid() int { return n.proc.cmd.Process.Pid }

func (n *natsServer) stop() error {
	n.hc.CloseIdleConnections()
	return n.proc.stop()
}

// varz is the part of nats-server's /varz the bench reports: the
// server's traffic with its clients since it started.
type varz struct {
	InMsgs   int64 `json:"in_msgs"`
	OutMsgs  int64 `json:"out_msgs"`
	InBytes  int64 `json:"in_bytes"`
	OutBytes int64 `json:"out_bytes"`
	Conns    int   `json:"connections"`
}

func (n *natsServer) varz(ctx context.Context) (varz, error) {
	var v varz
	return v, n.getJSON(ctx, "/varz", &v)
}

// jsz is the part of nats-server's /jsz the soak run reports: what
// JetStream stores, every stream together (the session directory, the
// revocation stream, the accounts).
type jsz struct {
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
}

func (n *natsServer) jsz(ctx context.Context) (jsz, error) {
	var j jsz
	return j, n.getJSON(ctx, "/jsz", &j)
}

// getJSON reads a monitoring endpoint of the server into v.
func (n *natsServer) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.monitor+path, nil)
	if err != nil {
		return err
	}
	resp, err := n.hc.Do(req)
	if err != nil {
		return fmt.Errorf("nats %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("nats %s: HTTP %d: %v", path, resp.StatusCode, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("nats %s: %w", path, err)
	}
	return nil
}

// natsTraffic is NATS's traffic over a window, per second: messages and
// bytes in (published by its clients) and out (delivered to them).
type natsTraffic struct {
	Seconds        float64 `json:"seconds"`
	InMsgsPerSec   float64 `json:"in_msgs_per_s"`
	OutMsgsPerSec  float64 `json:"out_msgs_per_s"`
	InBytesPerSec  float64 `json:"in_bytes_per_s"`
	OutBytesPerSec float64 `json:"out_bytes_per_s"`
}

// traffic samples /varz at the start and the end of d.
func (n *natsServer) traffic(ctx context.Context, d time.Duration) (natsTraffic, error) {
	a, err := n.varz(ctx)
	if err != nil {
		return natsTraffic{}, err
	}
	start := time.Now()
	if err := sleepCtx(ctx, d); err != nil {
		return natsTraffic{}, err
	}
	b, err := n.varz(ctx)
	if err != nil {
		return natsTraffic{}, err
	}
	s := time.Since(start).Seconds()
	return natsTraffic{Seconds: round(s, 2),
		InMsgsPerSec: round(float64(b.InMsgs-a.InMsgs)/s, 2), OutMsgsPerSec: round(float64(b.OutMsgs-a.OutMsgs)/s, 2),
		InBytesPerSec: round(float64(b.InBytes-a.InBytes)/s, 1), OutBytesPerSec: round(float64(b.OutBytes-a.OutBytes)/s, 1)}, nil
}
