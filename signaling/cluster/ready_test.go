package cluster

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/khadga/khadga/internal/cutproxy"
	"github.com/khadga/khadga/internal/metricstest"
	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/internal/testlog"
	"github.com/khadga/khadga/signaling/hub"
)

// Ready follows NATS: not ready while the server is away, ready again when
// it is back.
func TestReadyFollowsNATS(t *testing.T) {
	c := natstest.StartCluster(t, 1)
	a := startNode(t, "a", c.URLs(), fastConfig(), hub.Config{})
	if err := a.node.Ready(); err != nil {
		t.Fatalf("Ready with NATS up: %v", err)
	}
	c.Stop(0)
	eventually(t, "the node to say it is not ready", func() bool { return a.node.Ready() != nil })
	c.Restart(0)
	eventually(t, "the node to be ready again", func() bool { return a.node.Ready() == nil })
}

// TestReadyProbesDoNotQueue: /readyz asks Ready, which writes a key to
// JetStream (up to 2 s when it is slow) and keeps the answer for a
// second. The write ran under the lock that probes take, and the answer
// was stamped with the time the write began: probes that came during a
// slow write each waited for it, then found its answer stale and wrote
// again in turn, so the k-th waited k writes (anyone may ask /readyz, and
// each waiting probe holds a goroutine). A probe that comes while a check
// runs now gets the last answer at once.
func TestReadyProbesDoNotQueue(t *testing.T) {
	// A NATS server on which the node may not write its probe key: the
	// write gets no answer and runs to its timeout, as one to a JetStream
	// without a quorum does.
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true, Users: []*server.User{{Username: "node", Password: "node",
			Permissions: &server.Permissions{Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"$KV.*.health.>"}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo("node", "node"),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})) // the refused writes, expected
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	a := startNodeOn(t, "a", nc, fastConfig(), hub.Config{})
	const probes = 3
	took := make(chan time.Duration, probes)
	for range probes {
		go func() {
			start := time.Now()
			_ = a.node.Ready()
			took <- time.Since(start)
		}()
	}
	for range probes {
		if d := <-took; d > 3*time.Second {
			t.Fatalf("a readiness probe took %v; one slow write takes 2s, and no probe should wait for more than one", d.Round(time.Millisecond))
		}
	}
}

// TestDrainOnAStalledLink: a draining node's goodbye waited for NATS's
// answer to a flush for nats.go's default 10 s, so on a link to NATS that
// takes nothing (packets dropped, nothing closed) a SIGTERM's shutdown ran
// that far past its grace. The goodbye now waits a second at most, as
// Close's last flush does.
func TestDrainOnAStalledLink(t *testing.T) {
	s := natstest.Start(t)
	proxy := cutproxy.New(t, strings.TrimPrefix(s.ClientURL(), "nats://"))
	a := startNodeOn(t, "a", natstest.Connect(t, "nats://"+proxy.Addr()), fastConfig(), hub.Config{})
	proxy.Stall()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	a.node.Drain(ctx)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Drain took %v on a stalled link: its goodbye waited for NATS", d.Round(time.Millisecond))
	}
}

// TestRTTOnAStalledLink: the NATS round-trip gauge was measured at scrape
// time with nats.go's 10 s flush wait, so on a stalled link every scrape
// of /metrics took 10 s (and each sent a ping of its own). The node now
// measures it every 5 s, waiting 2 s at most, and a scrape reads the last
// figure: at once, and -1 once the link takes nothing.
func TestRTTOnAStalledLink(t *testing.T) {
	s := natstest.Start(t)
	proxy := cutproxy.New(t, strings.TrimPrefix(s.ClientURL(), "nats://"))
	reg := prometheus.NewRegistry()
	cfg := fastConfig()
	cfg.Registerer = reg
	startNodeOn(t, "a", natstest.Connect(t, "nats://"+proxy.Addr()), cfg, hub.Config{})
	rtt := func() float64 {
		start := time.Now()
		v := metricstest.Value(t, reg, "khadga_cluster_nats_rtt_seconds", nil)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("a scrape took %v", d.Round(time.Millisecond))
		}
		return v
	}
	eventually(t, "a round trip measured", func() bool { return rtt() > 0 })
	proxy.Stall()
	eventually(t, "the gauge to say the link takes nothing", func() bool { return rtt() == -1 })
}

// TestNewWaitsForJetStream: a node whose NATS goes away while it makes
// the directory's bucket (as a node's connection does, with nothing
// buffered) waits for it, and is made once NATS is back. New gave up at
// the first failed request: two of three nodes started at once on a new
// three-server NATS cluster exited with "context deadline exceeded".
func TestNewWaitsForJetStream(t *testing.T) {
	c := natstest.StartCluster(t, 1)
	nc := unbufferedConn(t, c.URLs())
	c.Stop(0)
	var logged testlog.Buffer
	cfg := fastConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	made := make(chan error, 1)
	go func() {
		_, err := New(ctx, cfg, nc)
		made <- err
	}()
	for !strings.Contains(logged.String(), "waiting for NATS JetStream") {
		select {
		case err := <-made:
			t.Fatalf("New with NATS away returned %v; want it to wait", err)
		case <-time.After(5 * time.Millisecond): // polling the log under the test's deadline
		}
	}
	c.Restart(0)
	if err := <-made; err != nil {
		t.Fatalf("New once NATS is back: %v", err)
	}
}

// TestDirectoryWatchWaitsForNATSQuietly: a restart of the directory watch
// asked for while NATS is away waits for the connection, and tries once
// it is back. It tried every 2 s meanwhile, each try failing at once
// with "outbound buffer limit exceeded", logged as a warning and counted
// as a KV error, for as long as NATS was away.
func TestDirectoryWatchWaitsForNATSQuietly(t *testing.T) {
	c := natstest.StartCluster(t, 1)
	nc := unbufferedConn(t, c.URLs())
	var logged testlog.Buffer
	cfg := fastConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	a := startNodeOn(t, "a", nc, cfg, hub.Config{})
	c.Stop(0)
	eventually(t, "the node's connection to drop", func() bool { return !nc.IsConnected() })
	a.node.dir.rewatch()
	c.Restart(0)
	eventually(t, "the node to be ready again", func() bool { return a.node.Ready() == nil })
	if strings.Contains(logged.String(), nats.ErrReconnectBufExceeded.Error()) {
		t.Fatalf("the watch was tried while NATS was away:\n%s", logged.String())
	}
	eventually(t, "the watch to restart", func() bool { return strings.Contains(logged.String(), "directory watch restarted") })
}

// unbufferedConn connects as a node's connection does (natsconn): it
// reconnects forever and buffers nothing while disconnected, so that a
// request then fails at once.
func unbufferedConn(t *testing.T, urls string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
