package kvstore

import (
	"errors"
	"time"

	"github.com/khadga/khadga/signaling/store"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics count the store's methods on this node: how many, how they
// ended, how long they took, and how often a compare-and-swap lost to
// another writer and was retried, or lost its answer and was settled.
type metrics struct {
	ops        *prometheus.CounterVec   // by op and result
	seconds    *prometheus.HistogramVec // by op
	conflicts  *prometheus.CounterVec   // by op
	lostAnswer *prometheus.CounterVec   // by op
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "khadga_kv_operations_total",
			Help: "Store operations on JetStream KV, by operation and result (ok; refused: an answer such as not found, exists or token reuse; unavailable: NATS or JetStream unreachable; error).",
		}, []string{"op", "result"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "khadga_kv_operation_seconds",
			Help:    "Duration of store operations on JetStream KV in seconds, retries included.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"op"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "khadga_kv_conflicts_total",
			Help: "Compare-and-swap writes that lost to another writer (another node or goroutine) and were retried, by operation.",
		}, []string{"op"}),
		lostAnswer: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "khadga_kv_answers_lost_total",
			Help: "Compare-and-swap writes whose answer was lost (a timeout, a dropped connection), so that the store read the record back to learn whether the write was applied, by operation.",
		}, []string{"op"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.ops, m.seconds, m.conflicts, m.lostAnswer} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) observe(op string, d time.Duration, err error) {
	m.ops.WithLabelValues(op, result(err)).Inc()
	m.seconds.WithLabelValues(op).Observe(d.Seconds())
}

func (m *metrics) conflict(op string) { m.conflicts.WithLabelValues(op).Inc() }

func (m *metrics) answerLost(op string) { m.lostAnswer.WithLabelValues(op).Inc() }

// answers are the errors that are the store's answer, not its failure.
var answers = []error{store.ErrNotFound, store.ErrUserExists, store.ErrKeyExists, store.ErrFamilyExists,
	store.ErrRevoked, store.ErrTokenReuse, store.ErrInvalid}

func result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, store.ErrUnavailable):
		return "unavailable"
	}
	for _, a := range answers {
		if errors.Is(err, a) {
			return "refused"
		}
	}
	return "error"
}
