package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestContainerConfigRuns runs the real server binary with the environment
// the compose service and the Kubernetes ConfigMap give it, changing only
// the listen addresses (loopback, free ports) and the data directory. It
// proves that configuration starts a ready server, that the image's
// healthcheck program finds it from KHADGA_HTTP alone, that `khadga backup`
// reaches it through the admin socket in KHADGA_DATA, as docs/deploy.md
// tells operators, and that SIGTERM stops it within the grace period.
func TestContainerConfigRuns(t *testing.T) {
	compose := mustLoadCompose(t).Services["khadga"]
	composeEnv := map[string]string{}
	for k, v := range compose.Environment {
		if v != nil {
			composeEnv[k] = *v
		}
	}
	grace := 30 * time.Second
	if compose.StopGracePeriod != nil {
		grace = time.Duration(*compose.StopGracePeriod)
	}
	t.Run("compose", func(t *testing.T) { runContainerConfig(t, composeEnv, grace) })
	t.Run("kubernetes", func(t *testing.T) { runContainerConfig(t, loadBase(t).cm.Data, 30*time.Second) })
}

func runContainerConfig(t *testing.T, settings map[string]string, grace time.Duration) {
	khadga, healthcheck := binary(t, "khadga"), binary(t, "khadga-healthcheck")
	// A short path: the admin socket's path must fit a sockaddr_un.
	data, err := os.MkdirTemp("", "kd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) })
	env := cleanEnv()
	for k, v := range settings {
		env = append(env, k+"="+v)
	}
	// Appended last, so they win: loopback with free ports, a temp data dir.
	env = append(env, "KHADGA_HTTP=127.0.0.1:0", "KHADGA_TURN_LISTEN=127.0.0.1:0", "KHADGA_DATA="+data, "KHADGA_LOG_JSON=true")

	srv := exec.Command(khadga, "serve")
	srv.Env = env
	logs := &lockedBuffer{}
	stderr, err := srv.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	addr := make(chan string, 1)
	// Wait only after the log is read to its end: Wait closes the pipe.
	go func() {
		scanLogs(stderr, logs, addr)
		exited <- srv.Wait()
	}()
	t.Cleanup(func() {
		srv.Process.Kill()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})

	var httpAddr string
	select {
	case httpAddr = <-addr:
	case err := <-exited:
		t.Fatalf("server exited at start: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("no \"khadga is running\" log line within a minute")
	}

	// The healthcheck sees only what the container's environment gives it.
	hcEnv := append(cleanEnv(), "KHADGA_HTTP="+httpAddr)
	if out, err := runTool(healthcheck, hcEnv); err != nil {
		t.Fatalf("healthcheck against the running server: %v\n%s", err, out)
	}

	backup := filepath.Join(data, "backup.db")
	if out, err := runTool(khadga, append(cleanEnv(), "KHADGA_DATA="+data), "backup", backup); err != nil {
		t.Fatalf("khadga backup while running: %v\n%s", err, out)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Size() == 0 {
		t.Fatalf("backup file: %v", err)
	}

	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("server exit after SIGTERM: %v", err)
		}
	case <-time.After(grace):
		t.Fatalf("server still running %v after SIGTERM (the grace period before SIGKILL)", grace)
	}
	if out, err := runTool(healthcheck, hcEnv); err == nil {
		t.Fatalf("healthcheck passed with the server stopped:\n%s", out)
	}
}

// scanLogs copies the server's JSON log lines into logs and sends the HTTP
// address of the "khadga is running" line on addr.
func scanLogs(r io.Reader, logs *lockedBuffer, addr chan<- string) {
	sc := bufio.NewScanner(r)
	sent := false
	for sc.Scan() {
		line := sc.Bytes()
		logs.Write(append(line, '\n'))
		var rec struct {
			Msg string `json:"msg"`
			URL string `json:"url"`
		}
		if !sent && json.Unmarshal(line, &rec) == nil && rec.Msg == "khadga is running" {
			addr <- strings.TrimPrefix(rec.URL, "http://")
			sent = true
		}
	}
}

// runTool runs a binary to completion with a time limit.
func runTool(bin string, env []string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return out, ctx.Err()
	}
	return out, err
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
