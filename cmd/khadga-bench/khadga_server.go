//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// benchMaxConnsPerUser is the --max-conns-per-user of the servers the bench
// starts. The hub caps each user's connections (default 32), and the bench
// spreads up to 10,000 connections over -users accounts (4: each account
// costs a token or a login), so each stands for thousands of users with one
// connection each, which the server would admit. The cap is lifted so that
// the bench measures connections, not the cap.
const benchMaxConnsPerUser = 100000

// spawnKhadga starts env's khadga binary on a free port with a fresh data
// directory: its working directory is a temp dir, so the default
// ./khadga-data lands there too. With wss it serves https and wss with the
// bench's certificate. extra comes after the bench's arguments and
// -server-arg's. procs, if positive, is its GOMAXPROCS.
func spawnKhadga(ctx context.Context, cfg *config, env *runEnv, cl *client, procs int, log *slog.Logger, extra ...string) (*process, string, error) {
	dir, err := os.MkdirTemp(env.dir, "khadga-")
	if err != nil {
		return nil, "", err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	turnAddr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	// The embedded TURN server stays on: each welcome then carries freshly
	// minted TURN credentials, as in a real deployment. It listens on
	// loopback, on a free port, so that it clashes with nothing.
	args := []string{"serve", "--http", addr, "--data", filepath.Join(dir, "data"),
		"--turn-listen", turnAddr, "--max-conns-per-user", strconv.Itoa(benchMaxConnsPerUser)}
	if cl.scheme == schemeWSS {
		// --tls-cert turns on TURNS too, by default on 0.0.0.0:5349:
		// loopback and a free port instead, as for TURN.
		turnsAddr, err := freeAddr()
		if err != nil {
			return nil, "", err
		}
		args = append(args, "--tls-cert", env.cert.certFile, "--tls-key", env.cert.keyFile, "--turn-tls-listen", turnsAddr)
	}
	args = append(args, cfg.ServerArgs...)
	args = append(args, extra...)
	cmd := exec.Command(env.bin, args...)
	cmd.Dir = dir
	setProcs(cmd, procs)
	p, err := startProcess(cmd, dir, log)
	if err != nil {
		return nil, "", err
	}
	base := cl.httpScheme() + "://" + addr
	if err := waitHTTP(ctx, cl.http, base+"/readyz", p); err != nil {
		tail := p.logTail() // before stop, which removes the log
		_ = p.stop()
		return nil, "", fmt.Errorf("khadga server did not become ready: %w\n%s", err, tail)
	}
	log.Info("khadga server ready", slog.String("url", base), slog.Int("pid", cmd.Process.Pid))
	return p, base, nil
}

// setProcs runs cmd with GOMAXPROCS procs, if positive.
func setProcs(cmd *exec.Cmd, procs int) {
	if procs > 0 {
		cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(procs))
	}
}

// freeAddr is 127.0.0.1 with a port free now.
func freeAddr() (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// buildKhadga runs go build for ./cmd/khadga of the module the bench runs in.
func buildKhadga(ctx context.Context, out string, log *slog.Logger) error {
	return goBuild(ctx, out, "./cmd/khadga", log)
}

// goBuild builds pkg, as the module the bench runs in requires it, into
// out, without cgo.
func goBuild(ctx context.Context, out, pkg string, log *slog.Logger) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	log.Info("building", slog.String("package", pkg), slog.String("module", root))
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// moduleRoot is the directory of the khadga module the bench runs in.
func moduleRoot(ctx context.Context) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if root == "." || root == "" || strings.HasSuffix(strings.TrimSpace(string(gomod)), os.DevNull) {
		return "", errors.New("not inside the khadga module: run from the repository or pass -server-bin or -url")
	}
	return root, nil
}
