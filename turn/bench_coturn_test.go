package turn

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// defaultBenchLoad is the turnutils_uclient load of the comparison: 100
// clients, each sending 2000 messages of 1000 bytes every millisecond to
// another client's relay (-y), so every message crosses the server twice.
const defaultBenchLoad = "-m 100 -n 2000 -l 1000 -z 1"

// BenchmarkCoturnComparison runs the same turnutils_uclient load against
// khadga's server and then against coturn's turnserver (a child process on
// other loopback ports), one after the other, and reports for each:
// messages relayed per second, loss, round-trip average and maximum, and
// server CPU seconds. It runs once whatever b.N is:
//
//	go test -run '^$' -bench CoturnComparison -benchtime 1x ./turn
//
// KHADGA_TURN_BENCH_LOAD replaces the uclient load flags.
func BenchmarkCoturnComparison(b *testing.B) {
	load := strings.Fields(defaultBenchLoad)
	if v := os.Getenv("KHADGA_TURN_BENCH_LOAD"); v != "" {
		load = strings.Fields(v)
	}
	const secret = "benchmark-secret"
	common := append([]string{"-y", "-c", "-W", secret, "-u", "bench"}, load...)

	s, err := New(Config{
		Listen:       "127.0.0.1:0",
		Secrets:      [][]byte{[]byte(secret)},
		AllowPeers:   []string{"127.0.0.1/32"}, // the clients' relays, as --allow-loopback-peers for coturn
		UserQuota:    -1,                       // uclient's clients share one user, as coturn has no user quota by default
		RelayMinPort: 42000, RelayMaxPort: 45999,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	cpu0 := selfCPU(b)
	kr, _, kout := runUclient(b, append(append([]string{}, common...), "-p", fmt.Sprint(s.UDPAddr().Port), "127.0.0.1"))
	kcpu := selfCPU(b) - cpu0
	if os.Getenv("KHADGA_TURN_BENCH_SHOW") != "" {
		b.Logf("%s", kout)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}

	c := startCoturn(b, secret, 46000, 49999)
	cr, _, _ := runUclient(b, append(append([]string{}, common...), "-p", fmt.Sprint(c.port), "127.0.0.1"))
	ccpu := c.stop()

	b.Logf("load: turnutils_uclient %s", strings.Join(common, " "))
	b.Logf("%-8s %10s %10s %8s %6s %10s %10s %8s %8s", "server", "sent", "received", "loss%", "time", "msgs/s", "rtt avg", "rtt max", "cpu s")
	for _, row := range []struct {
		name string
		r    uclientResult
		cpu  time.Duration
	}{{"khadga", kr, kcpu}, {"coturn", cr, ccpu}} {
		b.Logf("%-8s %10d %10d %8.3f %5ds %10.0f %8.2fms %6.0fms %8.2f", row.name, row.r.sent, row.r.received,
			row.r.lossPercent, row.r.transmitSec, rate(row.r), row.r.rttAvg, row.r.rttMax, row.cpu.Seconds())
	}
	b.ReportMetric(rate(kr), "khadga-msgs/s")
	b.ReportMetric(rate(cr), "coturn-msgs/s")
	b.ReportMetric(kr.lossPercent, "khadga-loss%")
	b.ReportMetric(cr.lossPercent, "coturn-loss%")
	b.ReportMetric(kcpu.Seconds(), "khadga-cpu-s")
	b.ReportMetric(ccpu.Seconds(), "coturn-cpu-s")
}

// rate is messages received per second of uclient's transmit time (whole
// seconds on uclient's clock, so coarse for short runs).
func rate(r uclientResult) float64 {
	if r.transmitSec == 0 {
		return 0
	}
	return float64(r.received) / float64(r.transmitSec)
}

// selfCPU is the user and system CPU time of this process so far.
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
