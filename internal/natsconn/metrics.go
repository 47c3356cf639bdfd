package natsconn

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Register adds the connection's metrics to reg: whether it is ready, the
// round trip of the last JetStream probe, and how often it reconnected.
// (The core NATS traffic and ping round trip of a khadga serve node are
// the hub's: signaling/cluster reports them on the same connection.)
func (c *Conn) Register(reg prometheus.Registerer) error {
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "khadga_nats_ready", Help: "1 while the NATS connection is up and JetStream takes writes, else 0.",
		}, func() float64 {
			if c.Ready() == nil {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "khadga_nats_jetstream_rtt_seconds", Help: "Round trip of the last successful JetStream readiness probe (an account info request), in seconds.",
		}, func() float64 { return c.RTT().Seconds() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "khadga_nats_reconnects_total", Help: "Reconnections to NATS.",
		}, func() float64 { return float64(c.nc.Stats().Reconnects) }),
	}
	for _, col := range cs {
		if err := reg.Register(col); err != nil {
			return err
		}
	}
	return nil
}
