package natsconn

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Register adds the connection's metrics to reg: whether it is ready,
// the round trip of the last JetStream probe, reconnects, and messages
// and bytes in and out (the node's whole NATS traffic: key-value and hub
// alike).
func (c *Conn) Register(reg prometheus.Registerer) error {
	stat := func(name, help string, v func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v()) })
	}
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "khadga_nats_ready", Help: "1 when the NATS connection is up and JetStream answers, else 0.",
		}, func() float64 {
			if c.Ready() == nil {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "khadga_nats_rtt_seconds", Help: "Round trip of the last successful JetStream probe.",
		}, func() float64 { return c.RTT().Seconds() }),
		stat("khadga_nats_reconnects_total", "Reconnections to NATS.", func() uint64 { return c.nc.Stats().Reconnects }),
		stat("khadga_nats_in_messages_total", "NATS messages received.", func() uint64 { return c.nc.Stats().InMsgs }),
		stat("khadga_nats_out_messages_total", "NATS messages sent.", func() uint64 { return c.nc.Stats().OutMsgs }),
		stat("khadga_nats_in_bytes_total", "NATS payload bytes received.", func() uint64 { return c.nc.Stats().InBytes }),
		stat("khadga_nats_out_bytes_total", "NATS payload bytes sent.", func() uint64 { return c.nc.Stats().OutBytes }),
	}
	for _, col := range cs {
		if err := reg.Register(col); err != nil {
			return err
		}
	}
	return nil
}
