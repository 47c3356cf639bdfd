package cluster

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// rttPeriod is how often a node measures its round trip to NATS, and
// rttTimeout how long it waits for the answer before it says -1.
const (
	rttPeriod  = 5 * time.Second
	rttTimeout = 2 * time.Second
)

// metrics are a node's Prometheus metrics: what an operator watches to see
// the cluster's health from one node.
type metrics struct {
	n                                      *Node
	delivered, received                    prometheus.Counter
	badMessages, publishErrors, outboxFull prometheus.Counter
	kvErrors, nodeDeaths, nodesRefused     prometheus.Counter
	fatesDropped                           prometheus.Counter
	pending, nodes                         prometheus.Gauge
	lost, claims, tickets, revocations     *prometheus.CounterVec
	ends                                   *prometheus.CounterVec
	kvLatency                              prometheus.Histogram
	// rtt is the last round trip to NATS in nanoseconds, -1 if it failed
	// or timed out (measureRTT).
	rtt atomic.Int64
}

func newMetrics(n *Node) *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "khadga_cluster_" + name, Help: help})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: "khadga_cluster_" + name, Help: help})
	}
	m := &metrics{
		n:             n,
		delivered:     c("deliveries_sent_total", "Messages sent to sessions on other nodes."),
		received:      c("deliveries_received_total", "Messages from other nodes for sessions of this node."),
		badMessages:   c("bad_messages_total", "Messages from the cluster that could not be read."),
		publishErrors: c("publish_errors_total", "NATS publishes that failed."),
		outboxFull:    c("outbox_full_total", "Deliveries, and acks and delivered notices for other nodes, refused because the outbox to NATS was full."),
		kvErrors:      c("kv_errors_total", "Session directory (JetStream KV) operations that failed."),
		fatesDropped:  c("signal_fates_dropped_total", "Acks and delivered notices for signals from other nodes that this node's full outbox refused: their senders are told, after AckWait (HeldWait for held signals), that the signals were not delivered, although they may have been."),
		nodeDeaths:    c("node_deaths_total", "Nodes found gone (no heartbeat)."),
		nodesRefused:  c("node_ids_refused_total", "Heartbeats and sessions of nodes not heard before, ignored because this node remembers as many nodes as it may (1024)."),
		pending:       g("signals_pending", "Signals sent to other nodes whose fate is not known yet."),
		nodes:         g("nodes_alive", "Nodes alive, this one included."),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "khadga_cluster_signals_lost_total",
			Help: "Signals to other nodes reported to their senders as not delivered, by reason."}, []string{"reason"}),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "khadga_cluster_claims_total",
			Help: "Sessions taken from other nodes for a resume here, by result."}, []string{"result"}),
		tickets: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "khadga_cluster_tickets_total",
			Help: "WebSocket tickets of other nodes presented here, by result: redeemed, refused, no_answer."}, []string{"result"}),
		ends: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "khadga_cluster_waiting_ends_total",
			Help: "Sessions waiting for a resume on other nodes that this node asked their nodes to end, for a new session of their user past --max-conns-per-user, by result: ended, refused (it resumed meanwhile, or moved on), no_answer."}, []string{"result"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "khadga_cluster_revocations_total",
			Help: "Revocations and sign-in moves from other nodes, by the way they came (core: NATS core; stream: the revocation stream) and result: handled, or repeat (handled already, when it came the other way)."}, []string{"via", "result"}),
		kvLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "khadga_cluster_kv_seconds",
			Help: "Latency of session directory writes, in seconds.", Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14)}),
	}
	m.rtt.Store(-1) // not measured yet
	return m
}

func (m *metrics) register(r prometheus.Registerer) error {
	rtt := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "khadga_cluster_nats_rtt_seconds",
		Help: "Round trip to the NATS server in seconds, measured every 5 s; -1 if the last one failed or took over 2 s."}, func() float64 {
		d := m.rtt.Load()
		if d < 0 {
			return -1
		}
		return time.Duration(d).Seconds()
	})
	msgs := func(name, help string, get func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "khadga_cluster_nats_" + name, Help: help},
			func() float64 { return float64(get()) })
	}
	for _, col := range []prometheus.Collector{m.delivered, m.received, m.badMessages, m.publishErrors, m.outboxFull,
		m.kvErrors, m.nodeDeaths, m.nodesRefused, m.fatesDropped, m.pending, m.nodes, m.lost, m.claims, m.tickets, m.revocations, m.ends, m.kvLatency, rtt,
		msgs("messages_in_total", "Messages this node received from NATS.", func() uint64 { return m.n.nc.Stats().InMsgs }),
		msgs("messages_out_total", "Messages this node sent to NATS.", func() uint64 { return m.n.nc.Stats().OutMsgs }),
		msgs("bytes_in_total", "Bytes this node received from NATS.", func() uint64 { return m.n.nc.Stats().InBytes }),
		msgs("bytes_out_total", "Bytes this node sent to NATS.", func() uint64 { return m.n.nc.Stats().OutBytes }),
	} {
		if err := r.Register(col); err != nil {
			return err
		}
	}
	return nil
}

// measureRTT measures the round trip to NATS now and every rttPeriod,
// until ctx ends. A scrape reads the last figure: measured at scrape
// time, a scrape on a slow link waited nats.go's 10 s flush, and every
// scrape sent a ping of its own.
func (m *metrics) measureRTT(ctx context.Context) {
	measure := func(time.Time) {
		start := time.Now()
		if err := m.n.nc.FlushTimeout(rttTimeout); err != nil {
			m.rtt.Store(-1)
			return
		}
		m.rtt.Store(int64(time.Since(start)))
	}
	measure(time.Now())
	every(ctx, rttPeriod, measure)
}
