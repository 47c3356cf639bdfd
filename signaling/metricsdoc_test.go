package signaling_test

import (
	"context"
	"log/slog"
	"os"
	"regexp"
	"slices"
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
	"go.yaml.in/yaml/v3"
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
			if _, ok := have[name]; !ok {
				t.Errorf("docs/operations.md lists %s, which no part of khadga serve registers", name)
			}
		}
	})
	t.Run("names, units and types", func(t *testing.T) {
		metricstest.Lint(t, reg)
	})
	t.Run("the alert rules name real metrics and label values", func(t *testing.T) {
		checkAlertRules(t, reg.Names())
	})
}

// alertRules is the rule file of docs/operations.md's "Alerts".
type alertRules struct {
	Groups []struct {
		Name  string
		Rules []struct {
			Alert       string
			Expr        string
			For         string
			Labels      map[string]string
			Annotations map[string]string
		}
	}
}

// selector is a metric in PromQL, with its label matchers, and matcher
// one of those.
var (
	selector = regexp.MustCompile(`\b(khadga_[a-z_]+|up)\b(?:\{([^}]*)\})?`)
	matcher  = regexp.MustCompile(`(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
)

// checkAlertRules reads the rule file of docs/operations.md and checks
// that it is a rule file, and that each metric its expressions name is
// one of have, with labels it has and values the metrics table gives:
// a typo in a rule would leave it silent for good.
func checkAlertRules(t *testing.T, have map[string][]string) {
	b, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	_, section, ok := strings.Cut(doc, "\n### Alerts\n")
	_, block, ok2 := strings.Cut(section, "```yaml\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("docs/operations.md has no yaml block under \"### Alerts\"")
	}
	var rules alertRules
	dec := yaml.NewDecoder(strings.NewReader(block))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("the rule file does not decode: %v", err)
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || r.Expr == "" || r.Annotations["summary"] == "" || (r.Labels["severity"] != "page" && r.Labels["severity"] != "warning") {
				t.Errorf("rule %q needs an alert name, an expr, a summary and a severity of page or warning", r.Alert)
			}
			for _, sel := range selector.FindAllStringSubmatch(r.Expr, -1) {
				checkSelector(t, r.Alert, sel[1], sel[2], have, doc)
			}
		}
	}
	if n < 5 {
		t.Fatalf("only %d alert rules", n)
	}
}

// checkSelector checks one metric of an alert's expression and its
// matchers.
func checkSelector(t *testing.T, alert, name, matchers string, have map[string][]string, doc string) {
	t.Helper()
	if name == "up" {
		return // Prometheus's own
	}
	labels, ok := have[name]
	if !ok {
		t.Errorf("%s: no metric %s", alert, name)
		return
	}
	row := ""
	for _, m := range metricRow.FindAllString(doc, -1) {
		if strings.Contains(m, "`"+name+"{") || strings.Contains(m, "`"+name+"`") {
			row = doc[strings.Index(doc, m):]
			row, _, _ = strings.Cut(row, "\n")
		}
	}
	for _, m := range matcher.FindAllStringSubmatch(matchers, -1) {
		if !slices.Contains(labels, m[1]) {
			t.Errorf("%s: %s has no label %s (it has %v)", alert, name, m[1], labels)
		}
		for _, v := range strings.Split(m[3], "|") {
			if !strings.Contains(row, "`"+v+"`") {
				t.Errorf("%s: %s{%s} is not a value the metrics table gives", alert, name, m[1]+"="+v)
			}
		}
	}
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
