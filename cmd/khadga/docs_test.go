package main

import (
	"bufio"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/khadga/khadga/internal/doccheck"
)

// TestEveryMetricIsDocumented finds every metric name in the server's
// source and checks that docs/operations.md lists it. Names the source
// builds from a prefix are checked on a running node instead
// (metricsDocumented, from TestServeOnNATS).
func TestEveryMetricIsDocumented(t *testing.T) {
	full := regexp.MustCompile(`"(khadga_[a-z_]+)"`)
	// turn/metrics.go builds names from Namespace "khadga", Subsystem "turn".
	turnName := regexp.MustCompile(`Subsystem: sub, Name: "([a-z_]+)"`)
	var names []string
	for _, src := range metricSources(t) {
		for _, m := range full.FindAllStringSubmatch(src, -1) {
			if !strings.HasSuffix(m[1], "_") { // a prefix
				names = append(names, m[1])
			}
		}
		for _, m := range turnName.FindAllStringSubmatch(src, -1) {
			names = append(names, "khadga_turn_"+m[1])
		}
	}
	if len(names) < 15 {
		t.Fatalf("found only %d metric names in the source; has the layout changed?", len(names))
	}
	undocumented(t, names)
}

// TestEveryMetricLabelIsDocumented finds every label value the server's
// source gives a metric as a literal (WithLabelValues("conns")) and
// checks that docs/operations.md names it, so that a new reason or
// result does not go unexplained. Values held in variables or constants
// are not seen.
func TestEveryMetricLabelIsDocumented(t *testing.T) {
	label := regexp.MustCompile(`WithLabelValues\(((?:"[a-z_]+", )*"[a-z_]+")\)`)
	var values []string
	for _, src := range metricSources(t) {
		for _, m := range label.FindAllStringSubmatch(src, -1) {
			for _, v := range strings.Split(m[1], ", ") {
				values = append(values, strings.Trim(v, `"`))
			}
		}
	}
	if len(values) < 20 {
		t.Fatalf("found only %d label values in the source; has the layout changed?", len(values))
	}
	doccheck.Documented(t, "../../docs/operations.md", "metric label value", values)
}

// metricSources returns the non-test Go files of the packages that
// register the server's metrics.
func metricSources(t *testing.T) []string {
	t.Helper()
	var globs []string
	for _, dir := range []string{"../../signaling", "../../signaling/hub", "../../turn", "../../signaling/store/kvstore",
		"../../internal/natsconn", "../../signaling/cluster"} {
		globs = append(globs, filepath.Join(dir, "*.go"))
	}
	return doccheck.Sources(t, globs...)
}

// undocumented fails the test for each name docs/operations.md does not
// list.
func undocumented(t *testing.T, names []string) {
	t.Helper()
	doccheck.Documented(t, "../../docs/operations.md", "metric", names)
}

// metricsDocumented scrapes a running server's /metrics (as a loopback
// client) and checks that docs/operations.md lists every khadga_ metric
// in it: the names the source builds from prefixes included. It returns
// the names it found.
func metricsDocumented(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	var names []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[1] == "TYPE" && strings.HasPrefix(f[2], "khadga_") {
			names = append(names, f[2])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	undocumented(t, names)
	found := make(map[string]bool, len(names))
	for _, n := range names {
		found[n] = true
	}
	return found
}
