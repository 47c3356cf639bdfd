package signaling_test

import (
	"context"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/metricstest"
	"github.com/khadga/khadga/internal/natsconn"
	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/internal/testlog"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/cluster"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/khadga/khadga/signaling/store/kvstore"
	"github.com/khadga/khadga/turn"
)

// TestMetricsOfAClusterNode registers every metric khadga serve has, on
// one registry, as a node of a cluster with the embedded TURN server
// does (the server's, the hub's, TURN's, the KV store's, the NATS
// connection's and the cluster node's), and checks them against
// docs/operations.md and the naming conventions. (The other way,
// every metric in the source is documented: cmd/khadga's
// TestEveryMetricIsDocumented.)
func TestMetricsOfAClusterNode(t *testing.T) {
	reg := metricstest.NewRegistry()
	urls := natstest.Start(t).ClientURL()
	conn, err := natsconn.Connect(natsconn.Options{URLs: []string{urls}, Logger: testlog.New(t, slog.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	if err := conn.Register(reg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := kvstore.Open(ctx, conn, kvstore.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := signalingtest.Start(t, signalingtest.Options{Store: st, NATS: urls, TURN: true,
		TURNConfig: turn.Config{Registerer: reg}, Cluster: cluster.Config{Registerer: reg},
		Config: signaling.Config{Registerer: reg, Gatherer: reg}})
	tok := s.User(t, "alice")
	s.Post(t, "/api/login", map[string]string{"username": "alice", "password": "wrong password"})
	s.Connect(t, tok.AccessToken, nil).Join("lobby")

	t.Run("every documented metric exists", func(t *testing.T) {
		have := reg.Names()
		for _, name := range documentedMetrics(t) {
			if !have[name] {
				t.Errorf("docs/operations.md lists %s, which no part of khadga serve registers", name)
			}
		}
	})
	t.Run("names, units and types", func(t *testing.T) {
		metricstest.Lint(t, reg)
	})
}

// metricRow is a row of the metrics table: its first cell names one or
// more metrics, each in backquotes, with their labels in braces.
var metricRow = regexp.MustCompile("(?m)^\\| (`khadga_[^|]+)\\|")

// metricName is one metric name in such a cell.
var metricName = regexp.MustCompile("`(khadga_[a-z_]+)")

// documentedMetrics returns the khadga_ metrics docs/operations.md's
// metrics table lists.
func documentedMetrics(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, row := range metricRow.FindAllStringSubmatch(string(b), -1) {
		for _, m := range metricName.FindAllStringSubmatch(row[1], -1) {
			names = append(names, strings.TrimSuffix(m[1], "_"))
		}
	}
	if len(names) < 40 {
		t.Fatalf("found only %d metrics in docs/operations.md's table; has its layout changed?", len(names))
	}
	return names
}
