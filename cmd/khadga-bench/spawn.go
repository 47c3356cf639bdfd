//go:build linux

// The servers the bench starts, as child processes.

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// process is a server the bench started. Its output goes to a log file in
// its temp dir, shown when it fails; the dir is removed on stop.
type process struct {
	cmd  *exec.Cmd
	dir  string
	logf *os.File
	done chan struct{}
	err  error // the exit error, set before done closes
	log  *slog.Logger
}

func startProcess(cmd *exec.Cmd, dir string, log *slog.Logger) (*process, error) {
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	if cmd.Stdout == nil {
		cmd.Stdout = logf
	}
	cmd.Stderr = logf
	// Its own process group, so that a Ctrl-C to the bench reaches the
	// bench first and the bench stops the server cleanly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &process{cmd: cmd, dir: dir, logf: logf, done: make(chan struct{}), log: log}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM, then SIGKILL after 10 s, and removes the temp dir.
func (p *process) stop() error {
	defer os.RemoveAll(p.dir)
	defer p.logf.Close()
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.log.Warn("server ignored SIGTERM for 10 s; killing it", slog.Int("pid", p.cmd.Process.Pid))
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	var ee *exec.ExitError
	if p.err != nil && !errors.As(p.err, &ee) {
		return p.err
	}
	return nil
}

// logTail returns the last 2 KiB of the server's output.
func (p *process) logTail() string {
	b, err := os.ReadFile(p.logf.Name())
	if err != nil {
		return ""
	}
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return string(b)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls url with hc until it answers 200, the process exits, or
// 60 s pass.
func waitHTTP(ctx context.Context, hc *http.Client, url string, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.done:
			return fmt.Errorf("server exited: %w", p.err)
		case <-tick.C:
		}
	}
}
