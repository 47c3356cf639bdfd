package turn

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// defaultBenchLoad is the turnutils_uclient load of the comparison: 100
// clients, each sending 2000 messages of 1000 bytes every millisecond to
// another client's relay (-y), so every message crosses the server twice.
const defaultBenchLoad = "-m 100 -n 2000 -l 1000 -z 1"

const benchSecret = "benchmark-secret"

// BenchmarkCoturnComparison runs the same turnutils_uclient load against
// khadga's TURN server and then against coturn's turnserver (a child
// process on other loopback ports), and reports for each: messages
// received per second, loss, round-trip average and maximum, and server CPU
// seconds. It runs once whatever b.N is:
//
//	go test -run '^$' -bench CoturnComparison -benchtime 1x ./turn
//
// Environment:
//
//	KHADGA_TURN_BENCH_LOAD    uclient load flags (default defaultBenchLoad)
//	KHADGA_TURN_BENCH_BIN     a khadga binary: run `khadga turn` as a child
//	                          process instead of the server in this process
//	KHADGA_TURN_BENCH_ROUNDS  rounds of khadga-then-coturn (default 1)
func BenchmarkCoturnComparison(b *testing.B) {
	load := strings.Fields(defaultBenchLoad)
	if v := os.Getenv("KHADGA_TURN_BENCH_LOAD"); v != "" {
		load = strings.Fields(v)
	}
	rounds := 1
	if v, err := strconv.Atoi(os.Getenv("KHADGA_TURN_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	common := append([]string{"-y", "-c", "-W", benchSecret, "-u", "bench"}, load...)
	b.Logf("load: turnutils_uclient %s -p PORT 127.0.0.1", strings.Join(common, " "))
	b.Logf("%-8s %10s %10s %8s %6s %10s %10s %8s %8s", "server", "sent", "received", "loss%", "time", "msgs/s", "rtt avg", "rtt max", "cpu s")
	var last [2]benchRow
	for i := 0; i < rounds; i++ {
		port, stop := startBenchKhadga(b)
		kr, _, _ := runUclient(b, append(append([]string{}, common...), "-p", strconv.Itoa(port), "127.0.0.1"))
		last[0] = benchRow{"khadga", kr, stop()}

		c := startCoturn(b, benchSecret, 46000, 49999)
		cr, _, _ := runUclient(b, append(append([]string{}, common...), "-p", strconv.Itoa(c.port), "127.0.0.1"))
		last[1] = benchRow{"coturn", cr, c.stop()}
		for _, row := range last {
			b.Logf("%-8s %10d %10d %8.3f %5ds %10.0f %8.2fms %6.0fms %8.2f", row.name, row.r.sent, row.r.received,
				row.r.lossPercent, row.r.transmitSec, msgRate(row.r), row.r.rttAvg, row.r.rttMax, row.cpu.Seconds())
		}
	}
	for _, row := range last {
		b.ReportMetric(msgRate(row.r), row.name+"-msgs/s")
		b.ReportMetric(row.r.lossPercent, row.name+"-loss%")
		b.ReportMetric(row.cpu.Seconds(), row.name+"-cpu-s")
	}
}

type benchRow struct {
	name string
	r    uclientResult
	cpu  time.Duration
}

// startBenchKhadga starts khadga's server for the benchmark: `khadga turn`
// from KHADGA_TURN_BENCH_BIN, or New in this process. stop returns the CPU
// time the server used.
func startBenchKhadga(b *testing.B) (port int, stop func() time.Duration) {
	b.Helper()
	const minPort, maxPort = 42000, 45999
	if bin := os.Getenv("KHADGA_TURN_BENCH_BIN"); bin != "" {
		cmd := exec.Command(bin, "turn",
			"--turn-listen", "127.0.0.1:0",
			"--turn-allow-peer", "127.0.0.1/32", // the clients' relays, as --allow-loopback-peers for coturn
			"--turn-user-quota", "-1", // uclient's clients share one user; coturn has no user quota by default
			"--turn-user-bandwidth", "-1", // nor a bandwidth cap (max-bps)
			"--turn-ports", fmt.Sprintf("%d-%d", minPort, maxPort))
		cmd.Env = append(os.Environ(), "KHADGA_TURN_SECRET="+benchSecret)
		c := startChild(b, cmd, 0, "TURN server listening")
		m := regexp.MustCompile(`udp=127\.0\.0\.1:(\d+)`).FindStringSubmatch(c.readyLine)
		if m == nil {
			b.Fatalf("no UDP address in %q", c.readyLine)
		}
		port, _ = strconv.Atoi(m[1])
		return port, c.stop
	}
	s, err := New(Config{
		Secrets:       [][]byte{[]byte(benchSecret)},
		AllowPeers:    []string{"127.0.0.1/32"},
		UserQuota:     -1,
		UserBandwidth: -1,
		RelayMinPort:  minPort, RelayMaxPort: maxPort,
		Logger: slog.New(slog.DiscardHandler),
	}, listen(b, ListenConfig{Addr: "127.0.0.1:0"}))
	if err != nil {
		b.Fatal(err)
	}
	cpu0 := selfCPU(b)
	return s.UDPAddr().Port, func() time.Duration {
		cpu := selfCPU(b) - cpu0
		if err := s.Close(); err != nil {
			b.Error(err)
		}
		return cpu
	}
}

// msgRate is messages received per second of uclient's transmit time (whole
// seconds on uclient's clock, so coarse for short runs).
func msgRate(r uclientResult) float64 {
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
