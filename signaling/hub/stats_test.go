package hub

import (
	"os"
	"regexp"
	"testing"

	"github.com/khadga/khadga/internal/metricstest"
	"github.com/khadga/khadga/proto"
	"github.com/prometheus/client_golang/prometheus"
)

// TestEveryErrorCodeIsExported: an error message of any code that proto
// defines is counted under its code in khadga_hub_errors_total. A code
// missing from the hub's list was counted in a slot no metric showed, as
// revoked was (a join or leave of a session that a sign-out ended).
func TestEveryErrorCodeIsExported(t *testing.T) {
	src, err := os.ReadFile("../../proto/errors.go")
	if err != nil {
		t.Fatal(err)
	}
	defined := regexp.MustCompile(`(?m)^\s*Code\w+\s+Code = "(\w+)"`).FindAllStringSubmatch(string(src), -1)
	if len(defined) < 10 {
		t.Fatalf("found only %d codes in proto/errors.go; has its layout changed?", len(defined))
	}
	if len(codes) >= len(counters{}.errors) {
		t.Fatalf("%d codes and %d counters: the last counter is for unknown codes", len(codes), len(counters{}.errors))
	}
	h := &Hub{}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{h})
	for _, m := range defined {
		h.stats.countError(proto.Code(m[1]))
		if n := metricstest.Value(t, reg, "khadga_hub_errors_total", map[string]string{"code": m[1]}); n != 1 {
			t.Errorf("khadga_hub_errors_total{code=%q} = %v after one, want 1", m[1], n)
		}
	}
}
