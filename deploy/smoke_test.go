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

	"github.com/khadga/khadga/internal/testlog"
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
	grace := 30 * time.Second
	if compose.StopGracePeriod != nil {
		grace = time.Duration(*compose.StopGracePeriod)
	}
	t.Run("compose", func(t *testing.T) { runContainerConfig(t, serviceEnv(compose.Environment), grace) })
	t.Run("kubernetes", func(t *testing.T) { runContainerConfig(t, loadBase(t).cm.Data, 30*time.Second) })
}

func runContainerConfig(t *testing.T, settings map[string]string, grace time.Duration) {
	healthcheck := binary(t, "khadga-healthcheck")
	srv := startServer(t, settings)
	// The healthcheck sees only what the container's environment gives it.
	hcEnv := append(cleanEnv(), "KHADGA_HTTP="+srv.addr)
	if out, err := runTool(healthcheck, hcEnv); err != nil {
		t.Fatalf("healthcheck against the running server: %v\n%s", err, out)
	}
	backup := filepath.Join(srv.data, "backup.db")
	if _, err := srv.admin("backup", backup); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Size() == 0 {
		t.Fatalf("backup file: %v", err)
	}
	srv.stop(t, grace)
	if out, err := runTool(healthcheck, hcEnv); err == nil {
		t.Fatalf("healthcheck passed with the server stopped:\n%s", out)
	}
}

// TestComposeRecorderRuns runs the real recorder (built with cgo and
// libvpx, as the recorder image is) with the compose service's command and
// environment, interpolated from KHADGA_RECORDER_TOKEN and
// KHADGA_RECORDER_ROOM, against a real server: it must join the room and
// stop cleanly on SIGTERM. The token is minted as docs/deploy.md says.
func TestComposeRecorderRuns(t *testing.T) {
	recorderSource(t)
	if err := exec.Command("pkg-config", "--exists", "vpx").Run(); err != nil {
		t.Skip("libvpx-dev is not installed (scripts/setup.sh installs it)")
	}
	rec := buildRecorder(t)
	compose := mustLoadCompose(t).Services["khadga"]
	srv := startServer(t, serviceEnv(compose.Environment))
	tok, err := srv.admin("token", "--user", "rec", "--role", "recorder", "--room", "lab", "--refresh")
	if err != nil {
		t.Fatal(err)
	}
	p, err := loadCompose(t, []string{"KHADGA_PUBLIC_IP=" + testPublicIP,
		"KHADGA_RECORDER_TOKEN=" + strings.TrimSpace(string(tok)), "KHADGA_RECORDER_ROOM=lab"}, "recorder")
	if err != nil {
		t.Fatal(err)
	}
	r := p.Services["recorder"]
	out := t.TempDir()
	var args []string
	for _, a := range r.Command {
		switch {
		case strings.HasPrefix(a, "--server="):
			// The compose network name khadga is this test's loopback server.
			a = "--server=" + strings.Replace(strings.TrimPrefix(a, "--server="), "khadga:8080", srv.addr, 1)
		case strings.HasPrefix(a, "--out="):
			a = "--out=" + out
		}
		args = append(args, a)
	}
	cmd := exec.Command(rec, args...)
	cmd.Env = cleanEnv()
	for k, v := range serviceEnv(r.Environment) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p2 := startProcess(t, cmd, func(line []byte) string {
		if bytes.Contains(line, []byte("msg=recording ")) && bytes.Contains(line, []byte("rooms=[lab]")) {
			return "joined"
		}
		return ""
	})
	select {
	case <-p2.found:
	case err := <-p2.exited:
		t.Fatalf("recorder exited: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("recorder did not join within a minute")
	}
	p2.stop(t, 30*time.Second)
}

func serviceEnv(m map[string]*string) map[string]string {
	env := map[string]string{}
	for k, v := range m {
		if v != nil {
			env[k] = *v
		}
	}
	return env
}

var (
	recorderOnce sync.Once
	recorderErr  string
)

// buildRecorder builds cmd/khadga-recorder with cgo, as the recorder image
// does.
func buildRecorder(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(binDir, "khadga-recorder")
	recorderOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		build := exec.CommandContext(ctx, goTool(), "build", "-o", bin, "./cmd/khadga-recorder")
		build.Dir = root
		build.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := build.CombinedOutput(); err != nil {
			recorderErr = "building cmd/khadga-recorder: " + err.Error() + "\n" + string(out)
		}
	})
	if recorderErr != "" {
		t.Fatal(recorderErr)
	}
	return bin
}

// server is a khadga serve process.
type server struct {
	*process
	bin, addr, data string
}

// startServer starts `khadga serve` with args and settings, then loopback
// listeners on free ports and a new data directory, and waits until it
// runs.
func startServer(t *testing.T, settings map[string]string, args ...string) *server {
	t.Helper()
	khadga := binary(t, "khadga")
	// A short path: the admin socket's path must fit a sockaddr_un.
	data, err := os.MkdirTemp("", "kd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) })
	cmd := exec.Command(khadga, append([]string{"serve"}, args...)...)
	cmd.Env = cleanEnv()
	for k, v := range settings {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	// Appended last, so they win.
	cmd.Env = append(cmd.Env, "KHADGA_HTTP=127.0.0.1:0", "KHADGA_TURN_LISTEN=127.0.0.1:0", "KHADGA_DATA="+data, "KHADGA_LOG_JSON=true")
	p := startProcess(t, cmd, func(line []byte) string {
		var rec struct {
			Msg string `json:"msg"`
			URL string `json:"url"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "khadga is running" {
			return strings.TrimPrefix(rec.URL, "http://")
		}
		return ""
	})
	select {
	case addr := <-p.found:
		return &server{process: p, bin: khadga, addr: addr, data: data}
	case err := <-p.exited:
		t.Fatalf("server exited at start: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("no \"khadga is running\" log line within a minute")
	}
	return nil
}

// admin runs a khadga admin command against the server's data directory,
// with only KHADGA_DATA set, as in the container, and returns its stdout.
func (s *server) admin(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = append(cleanEnv(), "KHADGA_DATA="+s.data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, errors.New("khadga " + strings.Join(args, " ") + ": " + err.Error() + "\n" + stderr.String())
	}
	return out, nil
}

// process is a child process whose stderr is collected line by line.
type process struct {
	cmd    *exec.Cmd
	logs   *testlog.Buffer
	found  chan string // the first non-empty result of match
	exited chan error
}

// startProcess starts cmd and scans its stderr with match; the process is
// killed when the test ends, and its log shown if the test failed.
func startProcess(t *testing.T, cmd *exec.Cmd, match func(line []byte) string) *process {
	t.Helper()
	p := &process{cmd: cmd, logs: &testlog.Buffer{}, found: make(chan string, 1), exited: make(chan error, 1)}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait only after the log is read to its end: Wait closes the pipe.
	go func() {
		p.scan(stderr, match)
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("%s log:\n%s", filepath.Base(cmd.Path), p.logs.String())
		}
	})
	return p
}

func (p *process) scan(r io.Reader, match func([]byte) string) {
	sc := bufio.NewScanner(r)
	sent := false
	for sc.Scan() {
		line := sc.Bytes()
		p.logs.Write(append(line, '\n'))
		if !sent {
			if v := match(line); v != "" {
				p.found <- v
				sent = true
			}
		}
	}
}

// stop sends SIGTERM and fails unless the process exits cleanly within
// grace (after which Docker and Kubernetes send SIGKILL).
func (p *process) stop(t *testing.T, grace time.Duration) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(grace):
		t.Fatalf("still running %v after SIGTERM (the grace period before SIGKILL)", grace)
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
