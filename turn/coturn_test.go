package turn

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// uclientResult is what turnutils_uclient reports at the end of a run.
type uclientResult struct {
	sent, received int
	lost           int
	lossPercent    float64
	rttAvg, rttMax float64 // milliseconds
	transmitSec    int     // uclient's own clock, whole seconds
}

var (
	reUclientMsgs = regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)
	reUclientLost = regexp.MustCompile(`Total lost packets (\d+) \(([\d.]+)%\)`)
	reUclientTime = regexp.MustCompile(`Total transmit time is (\d+)`)
	reUclientRTT  = regexp.MustCompile(`Average round trip delay ([\d.]+) ms; min = [\d.]+ ms, max = ([\d.]+) ms`)
)

// parseUclient reads the totals from turnutils_uclient's output. It wants
// all of them: a run that stopped early has no totals and must not pass.
func parseUclient(out []byte) (uclientResult, error) {
	var r uclientResult
	m := reUclientMsgs.FindAllSubmatch(out, -1)
	l := reUclientLost.FindAllSubmatch(out, -1)
	rtt := reUclientRTT.FindAllSubmatch(out, -1)
	if len(m) == 0 || len(l) == 0 || len(rtt) == 0 {
		return r, fmt.Errorf("no totals in turnutils_uclient output")
	}
	last := func(ms [][][]byte, i int) string { return string(ms[len(ms)-1][i]) }
	r.sent, _ = strconv.Atoi(last(m, 1))
	r.received, _ = strconv.Atoi(last(m, 2))
	r.lost, _ = strconv.Atoi(last(l, 1))
	r.lossPercent, _ = strconv.ParseFloat(last(l, 2), 64)
	r.rttAvg, _ = strconv.ParseFloat(last(rtt, 1), 64)
	r.rttMax, _ = strconv.ParseFloat(last(rtt, 2), 64)
	if tt := reUclientTime.FindAllSubmatch(out, -1); len(tt) > 0 {
		r.transmitSec, _ = strconv.Atoi(last(tt, 1))
	}
	return r, nil
}

// uclientPath finds turnutils_uclient. It is installed by scripts/setup.sh;
// in CI a missing tool is a failure, elsewhere a skip.
func uclientPath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("turnutils_uclient")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("turnutils_uclient is missing (scripts/setup.sh installs coturn); CI must run the interop test")
		}
		t.Skip("turnutils_uclient not installed (apt-get install coturn, or scripts/setup.sh)")
	}
	return p
}

// uclientArgs is a client-to-client UDP run with TURN REST credentials:
// every client allocates a relay and sends to another client's relay, so
// each message crosses the server twice.
func uclientArgs(secret, user string, port, clients, messages, length, intervalMS int, host string) []string {
	return []string{
		"-y", // client to client, through the relays
		"-c", // no RTCP allocations
		"-W", secret, "-u", user,
		"-p", strconv.Itoa(port),
		"-m", strconv.Itoa(clients), "-n", strconv.Itoa(messages),
		"-l", strconv.Itoa(length), "-z", strconv.Itoa(intervalMS),
		host,
	}
}

// TestCoturnClientInterop: coturn's own client, with its own REST
// credential code, relays through khadga's server without loss: over UDP
// with channels and with Send indications, and over TCP.
func TestCoturnClientInterop(t *testing.T) {
	bin := uclientPath(t)
	s, reg := startServer(t, func(c *Config) {
		// uclient's clients send to each other's relays, which live on the
		// server's own loopback address: allowed for this test only.
		c.AllowPeers = []string{"127.0.0.1/32"}
	})
	const clients, messages = 4, 50
	var total atomic.Int64
	// uclient idles a few seconds after its last message; run the three
	// in parallel to keep the test short.
	t.Run("group", func(t *testing.T) {
		for _, v := range []struct{ name, flag string }{{"udp-channels", ""}, {"udp-send", "-s"}, {"tcp", "-t"}} {
			t.Run(v.name, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				// -u names the user (one per run: 12 allocations of one user
				// would hit the quota of 10); -W makes uclient compute "<expiry>:user"
				// and the HMAC itself, as a coturn deployment's clients would.
				args := uclientArgs(string(testSecret), "interop-"+v.name, s.UDPAddr().Port, clients, messages, 200, 5, "127.0.0.1")
				if v.flag != "" {
					args = append([]string{v.flag}, args...)
				}
				out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
				if err != nil {
					t.Fatalf("turnutils_uclient %v: %v\n%s", args, err, out)
				}
				r, err := parseUclient(out)
				if err != nil {
					t.Fatalf("%v:\n%s", err, out)
				}
				t.Logf("uclient %v: sent %d received %d lost %d (%.2f%%) rtt avg %.2f ms max %.0f ms",
					args, r.sent, r.received, r.lost, r.lossPercent, r.rttAvg, r.rttMax)
				if r.sent < clients*messages || r.received != r.sent || r.lost != 0 || r.lossPercent != 0 {
					t.Fatalf("lossy relay: %+v\n%s", r, out)
				}
				total.Add(int64(r.sent))
			})
		}
	})
	if n := metricValue(t, reg, "khadga_turn_allocations_created_total", nil); n < 3*clients {
		t.Errorf("allocations created %v, want at least %d", n, 3*clients)
	}
	if n := metricValue(t, reg, "khadga_turn_relayed_packets_total", map[string]string{"direction": "to_peer"}); n < float64(total.Load()) {
		t.Errorf("packets relayed to peers %v, want at least %d", n, total.Load())
	}
}

// TestCoturnClientWrongSecret: uclient with another secret gets nowhere.
func TestCoturnClientWrongSecret(t *testing.T) {
	bin := uclientPath(t)
	s, reg := startServer(t, func(c *Config) { c.AllowPeers = []string{"127.0.0.1/32"} })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := uclientArgs("not-the-secret", "intruder", s.UDPAddr().Port, 1, 5, 100, 5, "127.0.0.1")
	out, _ := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if r, err := parseUclient(out); err == nil && r.received > 0 {
		t.Fatalf("uclient relayed with a wrong secret: %+v\n%s", r, out)
	}
	if n := metricValue(t, reg, "khadga_turn_allocations_created_total", nil); n != 0 {
		t.Fatalf("allocations created %v with a wrong secret", n)
	}
	if n := metricValue(t, reg, "khadga_turn_auth_failures_total", map[string]string{"reason": "integrity"}); n < 1 {
		t.Errorf("no integrity failure counted")
	}
}
