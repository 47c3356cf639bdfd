package natsconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/cutproxy"
	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/internal/testlog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestServersSplitsLists(t *testing.T) {
	o := Options{URLs: []string{"nats://a:4222, nats://b:4222", "", "tls://c:4222"}}
	got := o.Servers()
	if strings.Join(got, " ") != "nats://a:4222 nats://b:4222 tls://c:4222" || !o.Enabled() {
		t.Fatalf("Servers = %q", got)
	}
	if (Options{URLs: []string{" , "}}).Enabled() {
		t.Error("blank URLs enable cluster mode")
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "user.creds")
	if err := os.WriteFile(creds, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (Options{URLs: []string{"nats://127.0.0.1:4222,tls://h:4443"}, Creds: creds}).Validate(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	err := Options{URLs: []string{"http://u:hunter2@h:1", "nats://"}, CAFile: filepath.Join(dir, "missing.pem"),
		CertFile: creds}.Validate()
	for _, want := range []string{"http://u:xxxxx@h:1", `"nats://"`, "--nats-ca", "--nats-cert and --nats-key go together"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %v does not mention %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Validate error shows the password: %v", err)
	}
	if err := (Options{Creds: creds}).Validate(); err == nil {
		t.Error("credentials without a server accepted")
	}
}

// TestReadyFollowsTheServer: Ready fails when the server goes, and
// succeeds again once it is back; the checks added with AddCheck count.
func TestReadyFollowsTheServer(t *testing.T) {
	nats := natstest.StartCluster(t, 1) // restartable
	c, ctx := connectReady(t, Options{URLs: []string{nats.URLs()}, ProbeInterval: 100 * time.Millisecond})
	reg := prometheus.NewRegistry()
	if err := c.Register(reg); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "khadga_nats_ready", "khadga_nats_jetstream_rtt_seconds",
		"khadga_nats_reconnects_total"); err != nil || n != 3 {
		t.Fatalf("metrics: %d, %v", n, err)
	}
	if c.RTT() <= 0 {
		t.Fatalf("ready, with a probe round trip of %v", c.RTT())
	}

	back := c.Reconnected()
	nats.Stop(0)
	waitFor(t, func() bool { return errors.Is(c.Ready(), ErrNotReady) })
	nats.Restart(0)
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("not ready after the server came back: %v", err)
	}
	select {
	case <-back: // closed before the probe that made it ready
	default:
		t.Fatal("ready again, but Reconnected's channel is still open")
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP khadga_nats_reconnects_total Reconnections to NATS.
# TYPE khadga_nats_reconnects_total counter
khadga_nats_reconnects_total 1
`), "khadga_nats_reconnects_total"); err != nil {
		t.Fatal(err)
	}

	failing := errors.New("quorum lost")
	remove := c.AddCheck(func(context.Context) error { return failing })
	waitFor(t, func() bool {
		return errors.Is(c.Ready(), ErrNotReady) && strings.Contains(c.Ready().Error(), "quorum lost")
	})
	remove()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("not ready after the failing check went: %v", err)
	}
}

// TestReadyRidesOutLeaderElection: stopping the NATS server of three
// that leads JetStream leaves the meta group without a leader for a
// while, and the probe's account info request unanswered; the connection
// (to another server) stays ready meanwhile, as every request that needs
// no new leader still works. A probe that keeps timing out (a quorum
// lost) makes it not ready once the grace is over.
func TestReadyRidesOutLeaderElection(t *testing.T) {
	nats := natstest.StartCluster(t, 3)
	leader := slices.IndexFunc(nats.Servers, func(s *server.Server) bool { return s.JetStreamIsLeader() })
	other := (leader + 1) % 3
	c, ctx := connectReady(t, Options{URLs: []string{nats.Servers[other].ClientURL()},
		ProbeInterval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond})
	nats.Stop(leader)
	start := time.Now()
	var elected time.Duration
	for elected == 0 || time.Since(start) < elected+2*time.Second { // the probes in flight end too
		if err := c.Ready(); err != nil {
			t.Fatalf("%v after the meta leader stopped: %v", time.Since(start), err)
		}
		ask, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		_, err := c.JetStream().AccountInfo(ask)
		cancel()
		if err == nil && elected == 0 {
			elected = time.Since(start)
		}
		if ctx.Err() != nil {
			t.Fatal("no new meta leader in 10 s")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition for a while
	}
	t.Logf("a new meta leader answered after %v; ready throughout and 2 s beyond", elected)

	// A check that times out, as a write to a stream without a leader
	// does: ready for the grace, then not.
	c.AddCheck(func(context.Context) error { return fmt.Errorf("write: %w", context.DeadlineExceeded) })
	start = time.Now()
	for time.Since(start) < time.Second {
		if err := c.Ready(); err != nil {
			t.Fatalf("%v after the check began to time out: %v; want ready for %v", time.Since(start), err, electionGrace)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition for a while
	}
	deadline := time.Now().Add(electionGrace + 5*time.Second)
	for c.Ready() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("still ready %v after the check began to time out", time.Since(start))
		}
		time.Sleep(10 * time.Millisecond) // polling a condition under a deadline
	}
	t.Logf("not ready %v after the check began to time out: %v", time.Since(start), c.Ready())
}

// connectReady connects with o (a test logger, quick reconnects) and
// waits until the connection is ready. The context it returns (10 s) is
// for the test's later waits.
func connectReady(t *testing.T, o Options) (*Conn, context.Context) {
	t.Helper()
	o.Logger, o.ReconnectWait = testlog.New(t, slog.LevelInfo), 50*time.Millisecond
	c, err := Connect(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return c, ctx
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition under a deadline
	}
}

func TestIsUnavailable(t *testing.T) {
	if IsUnavailable(errors.New("wrong last sequence")) || IsUnavailable(nil) {
		t.Error("an answer counted as unavailability")
	}
	if !IsUnavailable(context.DeadlineExceeded) {
		t.Error("a timeout did not count")
	}
}

// logRecords is a slog handler that hands every record to a channel.
type logRecords chan slog.Record

func (l logRecords) Enabled(context.Context, slog.Level) bool      { return true }
func (l logRecords) Handle(_ context.Context, r slog.Record) error { l <- r; return nil }
func (l logRecords) WithAttrs([]slog.Attr) slog.Handler            { return l }
func (l logRecords) WithGroup(string) slog.Handler                 { return l }

// TestCloseIsQuiet: closing the connection on purpose, as every admin
// command with --nats does when it ends, logs no warning.
func TestCloseIsQuiet(t *testing.T) {
	srv := natstest.Start(t)
	recs := make(logRecords, 64)
	c, err := Connect(Options{URLs: []string{srv.ClientURL()}, Logger: slog.New(recs)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close()
	for {
		select {
		case r := <-recs:
			if r.Level >= slog.LevelWarn {
				t.Errorf("closing logged %s %q", r.Level, r.Message)
			}
			if r.Message == "NATS connection closed" { // nats.go's last callback
				return
			}
		case <-ctx.Done():
			t.Fatal("no record of the connection closing")
		}
	}
}

// TestStalledLinkIsDropped: a link to NATS that takes nothing more (every
// packet dropped, nothing closed) held nats.go's connection lock in a
// write for its default flusher timeout, a minute: pings, the readiness
// probe and every publish (a node's heartbeats, a resume's claim) waited
// behind it, and the connection said it was ready all the while, so a
// load balancer kept sending users to a node that could reach nobody. A
// write that makes no progress for two ping intervals now fails, as two
// unanswered pings do, and the connection reconnects.
func TestStalledLinkIsDropped(t *testing.T) {
	s := natstest.Start(t)
	proxy := cutproxy.New(t, strings.TrimPrefix(s.ClientURL(), "nats://"))
	c, ctx := connectReady(t, Options{URLs: []string{"nats://" + proxy.Addr()},
		PingInterval: 200 * time.Millisecond, ProbeInterval: 100 * time.Millisecond, Timeout: time.Second})
	back := c.Reconnected()
	proxy.Stall()
	var stop atomic.Bool
	t.Cleanup(func() { stop.Store(true) })
	go func() { // fills the kernel's buffers behind the stalled link, then blocks in a write
		payload := make([]byte, 64<<10)
		for i := 0; i < 1000 && !stop.Load(); i++ {
			if c.NATS().Publish("stall.test", payload) != nil {
				return
			}
		}
	}()
	waitFor(t, func() bool { return errors.Is(c.Ready(), ErrNotReady) })
	stop.Store(true)
	select {
	case <-back: // over a new connection through the proxy, which flows
	case <-ctx.Done():
		t.Fatal("no reconnect after the stalled link was dropped")
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("not ready again: %v", err)
	}
}
