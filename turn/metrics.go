package turn

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus metrics, all prefixed khadga_turn_.
type metrics struct {
	active       prometheus.Gauge
	created      prometheus.Counter
	authFailures *prometheus.CounterVec
	denied       prometheus.Counter
	selfDropped  prometheus.Counter
	quota        *prometheus.CounterVec

	// Children resolved once: the relay path is hot.
	bytesToPeer, bytesFromPeer                 prometheus.Counter
	packetsToPeer, packetsFromPeer             prometheus.Counter
	overBandwidthToPeer, overBandwidthFromPeer prometheus.Counter
}

func newMetrics() (*metrics, []prometheus.Collector) {
	const ns, sub = "khadga", "turn"
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "relayed_bytes_total",
		Help: "Payload bytes relayed: to_peer leaves a relay socket, from_peer arrives at one.",
	}, []string{"direction"})
	packets := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "relayed_packets_total",
		Help: "Datagrams relayed: to_peer leaves a relay socket, from_peer arrives at one.",
	}, []string{"direction"})
	overBandwidth := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "bandwidth_drops_total",
		Help: "Datagrams dropped because their user was over the relay bandwidth (--turn-user-bandwidth), by direction.",
	}, []string{"direction"})
	m := &metrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "allocations_active",
			Help: "Allocations currently open.",
		}),
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "allocations_created_total",
			Help: "Allocations created.",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "auth_failures_total",
			Help: "Requests refused for their credentials, by reason (malformed, expired, integrity).",
		}, []string{"reason"}),
		denied: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "permissions_denied_total",
			Help: "CreatePermission and ChannelBind peers refused by the peer-address policy.",
		}),
		selfDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "self_port_drops_total",
			Help: "Relayed datagrams dropped because they were for, or from, a port of the server's own address that is not a relay socket.",
		}),
		quota: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "quota_refusals_total",
			Help: "Requests refused by a quota (user, total, permissions, channels), and TCP or TLS connections closed at accept because their IP (IPv6: their /64) held too many unauthenticated ones (unauthenticated_per_ip).",
		}, []string{"quota"}),
		bytesToPeer:     bytes.WithLabelValues("to_peer"),
		bytesFromPeer:   bytes.WithLabelValues("from_peer"),
		packetsToPeer:   packets.WithLabelValues("to_peer"),
		packetsFromPeer: packets.WithLabelValues("from_peer"),

		overBandwidthToPeer:   overBandwidth.WithLabelValues("to_peer"),
		overBandwidthFromPeer: overBandwidth.WithLabelValues("from_peer"),
	}
	return m, []prometheus.Collector{m.active, m.created, m.authFailures, m.denied, m.selfDropped, m.quota, bytes, packets, overBandwidth}
}

// register registers cs on r, undoing the ones done if one fails.
func register(r prometheus.Registerer, cs []prometheus.Collector) error {
	for i, c := range cs {
		if err := r.Register(c); err != nil {
			for _, done := range cs[:i] {
				r.Unregister(done)
			}
			return fmt.Errorf("register TURN metrics: %w", err)
		}
	}
	return nil
}

// unregister undoes register.
func unregister(r prometheus.Registerer, cs []prometheus.Collector) error {
	var errs []error
	for _, c := range cs {
		if !r.Unregister(c) {
			errs = append(errs, fmt.Errorf("unregister %T", c))
		}
	}
	return errors.Join(errs...)
}
