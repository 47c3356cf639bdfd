package main

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v4"

	"github.com/khadga/khadga/internal/config"
	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/internal/stacks"
	"github.com/khadga/khadga/internal/testlog"
	"github.com/khadga/khadga/signaling/store"
	"github.com/khadga/khadga/turn"
)

// logWatch is a process's stderr, with a way to wait for a line.
type logWatch struct {
	mu    sync.Mutex
	lines []string
	more  chan struct{} // closed and replaced at every line
}

func newLogWatch() *logWatch { return &logWatch{more: make(chan struct{})} }

func (l *logWatch) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	close(l.more)
	l.more = make(chan struct{})
}

func (l *logWatch) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// waitFor waits for the n-th line (from 1) matching re and returns its
// submatches.
func (l *logWatch) waitFor(t *testing.T, re *regexp.Regexp, n int) []string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		l.mu.Lock()
		seen := 0
		for _, line := range l.lines {
			if m := re.FindStringSubmatch(line); m != nil {
				if seen++; seen == n {
					l.mu.Unlock()
					return m
				}
			}
		}
		more := l.more
		l.mu.Unlock()
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("no log line %d matching %q in:\n%s", n, re, l)
		}
	}
}

// startKhadga runs the built binary with args and env until the test ends.
func startKhadga(t *testing.T, dir string, env []string, args ...string) (*exec.Cmd, *logWatch) {
	t.Helper()
	cmd := exec.Command(khadgaBin, args...)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := newLogWatch()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.add(sc.Text())
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		cmd.Wait()
	})
	return cmd, logs
}

var (
	turnUDPRE  = regexp.MustCompile(`TURN server listening.* udp=(127\.0\.0\.1:\d+)`)
	reloadedRE = regexp.MustCompile(`TURN secrets reloaded.*why="?([^"=]+?)"? secrets=(\d+)`)
	keptRE     = regexp.MustCompile(`TURN secrets not reloaded`)
)

// allocate opens a TURN allocation on server over UDP with a fresh
// credential minted by secret.
func allocate(t *testing.T, server string, secret string) (*pionturn.Client, net.PacketConn, error) {
	t.Helper()
	user, pass, _ := turn.Mint([]byte(secret), "olga", time.Hour, time.Now())
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c, err := pionturn.NewClient(&pionturn.ClientConfig{TURNServerAddr: server, Conn: conn, Username: user, Password: pass, RTO: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err == nil {
		t.Cleanup(func() { relay.Close() })
	}
	return c, relay, err
}

// echoThrough sends a datagram from relay to a fresh peer on 127.0.0.1
// (which needs a permission, an authenticated request) and one back.
func echoThrough(t *testing.T, relay net.PacketConn) {
	t.Helper()
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := relay.WriteTo([]byte("ping through the relay"), peer.LocalAddr()); err != nil {
		t.Fatalf("relay write: %v", err)
	}
	buf := make([]byte, 100)
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "ping through the relay" {
		t.Fatalf("peer read: %q %v", buf[:n], err)
	}
	if _, err := peer.WriteTo([]byte("pong from the peer"), from); err != nil {
		t.Fatal(err)
	}
	relay.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, _, err = relay.ReadFrom(buf); err != nil || string(buf[:n]) != "pong from the peer" {
		t.Fatalf("relay read: %q %v", buf[:n], err)
	}
}

const (
	firstTURNSecret  = "the-old-turn-secret-0123"
	secondTURNSecret = "the-new-turn-secret-4567"
	thirdTURNSecret  = "the-newer-turn-secret-89"
)

// TestTurnSecretFileRotation rotates the TURN secret of a running `khadga
// turn` and `khadga serve` through --turn-secret-file, on SIGHUP and on a
// change of the file alone: the new secret works at once, an allocation
// opened with the old one keeps relaying (new permissions included) while
// the old secret stays in the file, a dropped secret opens nothing more,
// and a bad file changes nothing. (turn's TestSetSecretsKeepsAllocations
// shows an allocation outliving its dropped secret.)
func TestTurnSecretFileRotation(t *testing.T) {
	for _, command := range []string{"turn", "serve"} {
		t.Run(command, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "turn.secret")
			write := func(lines ...string) {
				t.Helper()
				// Write and rename, as configuration tools do: the watcher
				// never reads a half-written file.
				tmp := file + ".tmp"
				if err := os.WriteFile(tmp, []byte("# TURN secrets, newest first\n"+strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, file); err != nil {
					t.Fatal(err)
				}
			}
			write(firstTURNSecret)
			args := []string{command, "--turn-listen", "127.0.0.1:0", "--turn-secret-file", file,
				"--turn-allow-peer", "127.0.0.1", "--turn-public-ip", "127.0.0.1", "--turn-sockets", "1"}
			if command == "serve" {
				args = append(args, "--http", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--turn-tls-listen", "127.0.0.1:0")
			}
			cmd, logs := startKhadga(t, dir, nil, args...)
			server := logs.waitFor(t, turnUDPRE, 1)[1]

			_, oldRelay, err := allocate(t, server, firstTURNSecret)
			if err != nil {
				t.Fatalf("allocate with the old secret: %v", err)
			}
			echoThrough(t, oldRelay)
			if _, _, err := allocate(t, server, secondTURNSecret); err == nil {
				t.Fatal("the new secret worked before the rotation")
			}

			write(secondTURNSecret, firstTURNSecret)
			cmd.Process.Signal(syscall.SIGHUP)
			if m := logs.waitFor(t, reloadedRE, 1); m[2] != "2" {
				t.Fatalf("reloaded %s secrets, want 2", m[2])
			}
			if _, _, err := allocate(t, server, secondTURNSecret); err != nil {
				t.Fatalf("the new secret after SIGHUP: %v", err)
			}
			echoThrough(t, oldRelay) // a new permission, authenticated with the old secret

			// Without a signal: the poll sees the file change.
			write(thirdTURNSecret, secondTURNSecret)
			if m := logs.waitFor(t, reloadedRE, 2); !strings.Contains(m[1], "file changed") {
				t.Fatalf("second reload: %q", m[0])
			}
			if _, _, err := allocate(t, server, firstTURNSecret); err == nil {
				t.Fatal("the dropped secret still opens allocations")
			}
			if _, _, err := allocate(t, server, thirdTURNSecret); err != nil {
				t.Fatalf("the newest secret: %v", err)
			}

			write("short")
			cmd.Process.Signal(syscall.SIGHUP)
			logs.waitFor(t, keptRE, 1)
			if _, _, err := allocate(t, server, secondTURNSecret); err != nil {
				t.Fatalf("a bad file changed the secrets: %v", err)
			}
			if strings.Contains(logs.String(), thirdTURNSecret) {
				t.Fatal("a secret was logged")
			}
		})
	}
}

// logLines is a slog destination that feeds a logWatch line by line.
type logLines struct{ *logWatch }

func (l logLines) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		l.add(line)
	}
	return len(p), nil
}

// TestSecretWatchersEndWithTheServer: a --turn-secret-file that gives no
// secret at start (the store's serves until it does) has both the file's
// and the store's watcher running; Close ends both. The file watcher used
// to outlive it, polling, registered for SIGHUP, and setting the secrets
// of a closed server.
func TestSecretWatchersEndWithTheServer(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "khadga.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	file := filepath.Join(dir, "turn.secret")
	if err := os.WriteFile(file, []byte("# filled in later\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var c turnConfig // as khadga serve has it
	if err := config.Defaults(&c); err != nil {
		t.Fatal(err)
	}
	c.Listen, c.Sockets, c.SecretFile = "127.0.0.1:0", 1, file
	ts, err := c.start(context.Background(), st, nil, testlog.New(t, slog.LevelInfo), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(allStacks(), "(*turnConfig).watchSecrets.func") {
		t.Fatal("no --turn-secret-file watcher while the server runs")
	}
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waits for the watchers it stops to leave their loops.
	if strings.Contains(allStacks(), "(*secretWatcher).run") {
		t.Fatalf("the --turn-secret-file watcher outlives Close:\n%s", stacks.Summary())
	}
}

// allStacks is every goroutine's stack.
func allStacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// TestSecretFileOverridesStore: with --nats and a --turn-secret-file that
// gives no secret at start, the cluster's secrets serve and follow a
// rotation; once the file gives secrets they replace the cluster's for
// good, as docs/turn.md says: a later rotation in the cluster changes
// nothing.
func TestSecretFileOverridesStore(t *testing.T) {
	nats := natstest.Start(t).ClientURL()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	file := filepath.Join(t.TempDir(), "turn.secret")
	write := func(lines ...string) {
		t.Helper()
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte("# TURN secrets\n"+strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write()
	o, err := loadTurn(t, "--turn-listen", "127.0.0.1:0", "--turn-sockets", "1", "--nats", nats, "--turn-secret-file", file)
	if err != nil {
		t.Fatal(err)
	}
	logs := newLogWatch()
	log := slog.New(slog.NewTextHandler(logLines{logs}, nil))
	ready, done := make(chan *turn.Server, 1), make(chan error, 1)
	go func() { done <- serveTURN(ctx, o, log, func(s *turn.Server, _ net.Addr) { ready <- s }) }()
	var srv *turn.Server
	select {
	case srv = <-ready:
	case err := <-done:
		t.Fatalf("serveTURN: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("serveTURN did not start")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveTURN: %v", err)
		}
	}()
	st := clusterStore(ctx, t, nats)
	rotate := func() {
		t.Helper()
		if _, err := rotateTURNSecret(st); err != nil {
			t.Fatal(err)
		}
	}
	cluster := regexp.MustCompile(`TURN secrets reloaded.*changed in the cluster`)
	fromFile := regexp.MustCompile(`TURN secrets reloaded.*file changed`)

	rotate()
	logs.waitFor(t, cluster, 1)
	write(firstTURNSecret)
	logs.waitFor(t, fromFile, 1)
	if !bytes.Equal(srv.ICEConfig().Secret, []byte(firstTURNSecret)) {
		t.Fatal("the file's secret does not mint")
	}
	rotate()
	// The cluster's watcher sees a rotation within milliseconds; the
	// file's next change is seen at the next poll, seconds later.
	write(secondTURNSecret, firstTURNSecret)
	logs.waitFor(t, fromFile, 2)
	if got := len(cluster.FindAllString(logs.String(), -1)); got != 1 {
		t.Fatalf("the cluster's secrets were applied %d times, want once, before the file gave secrets:\n%s", got, logs)
	}
	if !bytes.Equal(srv.ICEConfig().Secret, []byte(secondTURNSecret)) {
		t.Fatal("the file's newest secret does not mint")
	}
}
