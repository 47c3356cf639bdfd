// Package metricstest reads Prometheus metrics in tests.
package metricstest

import (
	"maps"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Value sums the samples (counters and gauges) of the metric name in g
// whose labels include want (nil: all of them).
func Value(t testing.TB, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for k, v := range want {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// Registry is a prometheus.Registry that remembers the name and label
// names of every metric registered on it, whether it has been gathered
// yet or not (a vector with no child yet is not gathered): a test can
// check that a name the docs give exists.
type Registry struct {
	*prometheus.Registry
	mu    sync.Mutex
	names map[string][]string // label names by metric name
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{Registry: prometheus.NewRegistry(), names: map[string][]string{}}
}

// descString is how a Desc's String shows its metric's name and its
// variable labels.
var descString = regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)

// Register registers c and remembers the names it describes.
func (r *Registry) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err
	}
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	r.mu.Lock()
	defer r.mu.Unlock()
	for d := range ch {
		if m := descString.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = strings.FieldsFunc(m[2], func(c rune) bool { return c == ',' })
		}
	}
	return nil
}

// MustRegister registers cs, panicking as prometheus.Registry's does.
func (r *Registry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// Names are the metrics registered so far: their label names by their
// names.
func (r *Registry) Names() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.names)
}
