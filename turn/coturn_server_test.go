package turn

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childServer is a TURN server run as a child process of the test:
// coturn's turnserver (never as a system service), or a khadga binary.
type childServer struct {
	cmd       *exec.Cmd
	port      int
	done      chan struct{}
	readyLine string
}

// startCoturn runs turnserver on 127.0.0.1 with the REST secret, and
// returns once it says its servers are up.
func startCoturn(t testing.TB, secret string, minPort, maxPort int) *childServer {
	t.Helper()
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("turnserver is missing (scripts/setup.sh installs coturn)")
		}
		t.Skip("turnserver not installed (apt-get install coturn)")
	}
	port := freeUDPPort(t)
	dir := t.TempDir()
	args := []string{
		"-n", // no config file
		"--use-auth-secret", "--static-auth-secret=" + secret, "--realm=khadga",
		"--listening-ip=127.0.0.1", "--listening-port=" + strconv.Itoa(port),
		"--relay-ip=127.0.0.1",
		"--min-port=" + strconv.Itoa(minPort), "--max-port=" + strconv.Itoa(maxPort),
		"--no-tcp", "--no-tls", "--no-dtls", "--no-tcp-relay", "--no-cli",
		// The test peers are the clients' relays on 127.0.0.1, as for
		// khadga's server with 127.0.0.1 allowed.
		"--allow-loopback-peers",
		"--log-file=stdout", "--pidfile=" + filepath.Join(dir, "turnserver.pid"),
		"--userdb=" + filepath.Join(dir, "turndb"),
	}
	return startChild(t, exec.Command(bin, args...), port, "Total General servers")
}

// startChild starts cmd and returns once a line of its output contains
// ready; that line is in c.readyLine.
func startChild(t testing.TB, cmd *exec.Cmd, port int, ready string) *childServer {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &childServer{cmd: cmd, port: port, done: make(chan struct{})}
	up := make(chan struct{})
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), ready) {
				c.readyLine = sc.Text()
				close(up)
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout) // keep the pipe flowing
	}()
	t.Cleanup(func() { c.stop() })
	select {
	case <-up:
	case <-c.done:
		t.Fatalf("%s exited before it was ready", cmd.Path)
	case <-time.After(waitTimeout):
		t.Fatalf("%s did not get ready", cmd.Path)
	}
	return c
}

// stop ends the child (by its pid, never by name) and returns the CPU time
// it used.
func (c *childServer) stop() time.Duration {
	if c.cmd.ProcessState == nil {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(waitTimeout):
			_ = c.cmd.Process.Kill()
		}
		_ = c.cmd.Wait()
	}
	return c.cmd.ProcessState.UserTime() + c.cmd.ProcessState.SystemTime()
}

// freeUDPPort finds a port free for UDP on 127.0.0.1 (a moment ago).
func freeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestCoturnServerAcceptsMint: credentials minted by khadga work on
// coturn's server with the same secret, so coturn and khadga TURN nodes
// can serve the same signaling server.
func TestCoturnServerAcceptsMint(t *testing.T) {
	const secret = "shared-with-coturn"
	c := startCoturn(t, secret, 41000, 41100)
	user, pass, _ := Mint([]byte(secret), "alice", time.Hour, time.Now())
	client := newClient(t, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: c.port}, user, pass)
	relay, err := client.Allocate()
	if err != nil {
		t.Fatalf("Allocate on coturn with khadga's credentials: %v", err)
	}
	defer relay.Close()
	relayRoundTrip(t, relay, listenPeer(t, "127.0.0.2:0"))

	wrongUser, wrongPass, _ := Mint([]byte("another-secret"), "alice", time.Hour, time.Now())
	if _, err := newClient(t, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: c.port}, wrongUser, wrongPass).Allocate(); err == nil {
		t.Fatal("coturn accepted credentials of another secret: the comparison proves nothing")
	}
}

// runUclient runs turnutils_uclient and parses its totals.
func runUclient(t testing.TB, args []string) (uclientResult, time.Duration, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, uclientPath(t), args...).CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		t.Fatalf("turnutils_uclient %v: %v\n%s", args, err, out)
	}
	r, err := parseUclient(out)
	if err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	return r, wall, out
}
