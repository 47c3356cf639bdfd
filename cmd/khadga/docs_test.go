package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestEveryMetricIsDocumented finds every metric name in the server's
// source and checks that docs/operations.md lists it.
func TestEveryMetricIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	full := regexp.MustCompile(`"(khadga_[a-z_]+)"`)
	// turn/metrics.go builds names from Namespace "khadga", Subsystem "turn".
	turnName := regexp.MustCompile(`Subsystem: sub, Name: "([a-z_]+)"`)
	var names []string
	for _, dir := range []string{"../../signaling", "../../signaling/hub", "../../turn", "../../signaling/store/kvstore", "../../internal/natsconn"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range full.FindAllStringSubmatch(string(b), -1) {
				names = append(names, m[1])
			}
			for _, m := range turnName.FindAllStringSubmatch(string(b), -1) {
				names = append(names, "khadga_turn_"+m[1])
			}
		}
	}
	if len(names) < 15 {
		t.Fatalf("found only %d metric names in the source; has the layout changed?", len(names))
	}
	for _, n := range names {
		if !strings.Contains(string(doc), "`"+n) {
			t.Errorf("metric %s is not in docs/operations.md", n)
		}
	}
}
