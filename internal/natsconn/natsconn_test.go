package natsconn

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/internal/testlog"
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
	c, err := Connect(Options{URLs: []string{nats.URLs()}, Logger: testlog.New(t, slog.LevelInfo),
		ReconnectWait: 50 * time.Millisecond, ProbeInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
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
