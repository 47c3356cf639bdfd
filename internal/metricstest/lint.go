package metricstest

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// units are the base units khadga's metric names end in (before _total).
var units = []string{"seconds", "bytes"}

// Lint fails t for each metric that g gathers and that breaks
// Prometheus's naming conventions (promlint: counters end in _total,
// base units, no type in the name) or khadga's own, which an operator
// writing a query relies on: a metric named for a unit (a _seconds or
// _bytes suffix, before _total) says that unit in its HELP text, gauges
// do not end in _total, and histograms measure durations in seconds.
func Lint(t testing.TB, g prometheus.Gatherer) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	for _, mf := range mfs {
		name, help := mf.GetName(), strings.ToLower(mf.GetHelp())
		for _, u := range units {
			if strings.HasSuffix(strings.TrimSuffix(name, "_total"), "_"+u) && !strings.Contains(help, u) {
				t.Errorf("%s: its HELP does not say its unit, %s: %q", name, u, mf.GetHelp())
			}
		}
		switch mf.GetType().String() {
		case "GAUGE":
			if strings.HasSuffix(name, "_total") {
				t.Errorf("%s: a gauge named like a counter (_total)", name)
			}
		case "HISTOGRAM":
			if !strings.HasSuffix(name, "_seconds") {
				t.Errorf("%s: a histogram that is not a duration in seconds", name)
			}
		}
	}
}
