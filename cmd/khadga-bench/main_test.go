package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/signalingtest"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func TestSignalFrame(t *testing.T) {
	for _, tg := range []target{&khadgaTarget{}, &peerJSTarget{}} {
		t.Run(tg.name(), func(t *testing.T) {
			f := newSignalFrame(tg, "peer-7", 1024)
			b := f.stamp(1234567890123)
			if !json.Valid(b) {
				t.Fatalf("frame is not JSON: %.120s", b)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			payload := m["data"]
			if tg.name() == "peerjs" {
				payload = m["payload"]
			}
			if len(payload) != 1024 {
				t.Errorf("payload is %d bytes, want 1024", len(payload))
			}
			got, ok := readStamp(b)
			if !ok || got != 1234567890123 {
				t.Errorf("readStamp = %d, %v; want 1234567890123", got, ok)
			}
			want := map[string]string{"khadga": "signal", "peerjs": "OFFER"}[tg.name()]
			if typ := msgType(b); typ != want {
				t.Errorf("msgType = %q, want %q", typ, want)
			}
			// A second stamp rewrites the first in place.
			if got, _ := readStamp(f.stamp(42)); got != 42 {
				t.Errorf("restamped = %d, want 42", got)
			}
		})
	}
}

func TestMsgTypeFallback(t *testing.T) {
	if got := msgType([]byte(`{ "type" : "pong" }`)); got != "pong" {
		t.Fatalf("msgType with spaces = %q", got)
	}
	if got := msgType([]byte(`{"type":"error","ref":"1","data":{"code":"rate_limited"}}`)); got != "error" {
		t.Fatalf("msgType = %q", got)
	}
	if got := errCode([]byte(`{"type":"error","data":{"code":"rate_limited","message":"x"}}`), "error"); got != "rate_limited" {
		t.Fatalf("errCode = %q", got)
	}
}

func TestPercentile(t *testing.T) {
	s := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tt := range []struct {
		q    float64
		want int64
	}{{0.5, 5}, {0.99, 10}, {0.1, 1}, {1, 10}, {0, 1}} {
		if got := percentile(s, tt.q); got != tt.want {
			t.Errorf("percentile(%v) = %d, want %d", tt.q, got, tt.want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("percentile of nothing is not 0")
	}
}

func TestParseConfig(t *testing.T) {
	cfg, err := parseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Target != "both" || len(cfg.Idle) != 3 || cfg.Idle[2] != 10000 || cfg.Pairs != 200 ||
		cfg.Rate != 10000 || cfg.Open != 1000 || cfg.Dialers != 50 || cfg.Heartbeat != 5*time.Second || len(cfg.Phases) != 4 {
		t.Fatalf("defaults differ from issue 2's loads: %+v", cfg)
	}
	for _, bad := range [][]string{
		{"-target", "nats"},
		{"-idle", "5000,1000"},
		{"-phases", "idle,dance"},
		{"-size", "10"},
		{"-pid", "12"},
		{"extra"},
	} {
		if _, err := parseConfig(bad); err == nil {
			t.Errorf("parseConfig(%q) accepted", bad)
		}
	}
}

func TestProc(t *testing.T) {
	pid := os.Getpid()
	r, err := rss(pid)
	if err != nil || r < 1<<20 {
		t.Fatalf("rss = %d, %v", r, err)
	}
	if _, err := cpuSeconds(pid); err != nil {
		t.Fatal(err)
	}
	if io, err := readProcIO(pid); err != nil || io.Reads <= 0 {
		t.Fatalf("readProcIO = %+v, %v", io, err)
	}
	n, err := noFileLimit(pid)
	if err != nil || n == 0 {
		t.Fatalf("noFileLimit = %d, %v", n, err)
	}
	if _, err := rss(1 << 30); err == nil {
		t.Fatal("rss of a missing process succeeded")
	}
}

// tinyConfig runs every phase at a size that takes seconds.
func tinyConfig(t *testing.T) *config {
	cfg, err := parseConfig([]string{
		"-idle", "20,40", "-settle", "0s", "-heartbeat", "200ms", "-open", "30", "-dialers", "5",
		"-pairs", "4", "-duration", "500ms", "-warmup", "100ms", "-rate", "400", "-users", "2", "-rounds", "2",
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// checkResult asserts that every phase produced figures.
func checkResult(t *testing.T, res *targetResult, idle bool) {
	t.Helper()
	if len(res.Errors) > 0 {
		t.Fatalf("phases failed: %v", res.Errors)
	}
	if idle && (len(res.Idle) != 2 || res.Idle[1].Conns != 40 || res.Idle[1].RSSBytes <= 0 || res.Idle[1].Dropped != 0) {
		t.Errorf("idle = %+v", res.Idle)
	}
	if res.Open == nil || res.Open.Conns != 30 || res.Open.PerSecond <= 0 {
		t.Errorf("open = %+v", res.Open)
	}
	if len(res.OpenRounds) != 2 || len(res.RelayMaxRounds) != 2 || len(res.RelayRateRounds) != 2 {
		t.Errorf("rounds: open %d, relay max %d, relay rate %d; want 2 each", len(res.OpenRounds), len(res.RelayMaxRounds), len(res.RelayRateRounds))
	}
	for _, r := range []*relayResult{res.RelayMax, res.RelayRate} {
		if r == nil || r.Received == 0 || r.Samples == 0 || r.P50ms <= 0 || r.P99ms < r.P50ms || len(r.Errors) > 0 || r.Dropped > 0 {
			t.Errorf("relay = %+v", r)
		}
	}
}

func TestPeerJS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Node.js server")
	}
	cfg := tinyConfig(t)
	if _, err := exec.LookPath(cfg.Node); err != nil {
		t.Skip("node not installed")
	}
	if _, err := peerJSDir(""); err != nil {
		t.Skipf("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := measureTarget(ctx, cfg, "peerjs", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, true)
	rep := newReport(cfg)
	rep.Targets["peerjs"] = res
	cfg.JSON = true
	if err := writeReport(io.Discard, cfg, rep); err != nil {
		t.Fatal(err)
	}
}

func TestKhadga(t *testing.T) {
	// Four pairs as fast as they go exceed the default 200 messages/s per
	// connection; this test checks the bench, not the limit.
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{MessageRate: 1e6, MessageBurst: 1e6}})
	cfg := tinyConfig(t)
	// The server runs in this process: its RSS is the test's, so the idle
	// figures only show that the phase runs.
	cfg.URL, cfg.PID = s.URL, os.Getpid()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := measureTarget(ctx, cfg, "khadga", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, true)
}

func TestSummaryAndGoals(t *testing.T) {
	k := &targetResult{
		Idle:            []idleResult{{Conns: 10000, PerConnBytes: 4000}},
		OpenRounds:      []*openResult{{PerSecond: 3000}, {PerSecond: 5000}, {PerSecond: 4000}},
		RelayMaxRounds:  []*relayResult{{PerSecond: 90000, P99ms: 3, Errors: map[string]int64{"rate_limited": 1}}, {PerSecond: 80000, P99ms: 5}, {PerSecond: 100000, P99ms: 4}},
		RelayRateRounds: []*relayResult{{PerSecond: 10000, P50ms: 0.2, P99ms: 2}},
	}
	p := &targetResult{
		Idle:            []idleResult{{Conns: 10000, PerConnBytes: 5600}},
		OpenRounds:      []*openResult{{PerSecond: 4500}},
		RelayMaxRounds:  []*relayResult{{PerSecond: 42000, P99ms: 9}},
		RelayRateRounds: []*relayResult{{PerSecond: 10000, P50ms: 0.3, P99ms: 1.8}},
	}
	k.summarize()
	p.summarize()
	if k.Open.PerSecond != 4000 || k.RelayMax.PerSecond != 90000 || k.RelayMax.P99ms != 4 || k.RelayMax.Errors["rate_limited"] != 1 || k.RelayMax.Rounds != 3 {
		t.Fatalf("medians: open %+v, relay %+v", k.Open, k.RelayMax)
	}
	cfg := tinyConfig(t)
	rep := newReport(cfg)
	rep.Targets["khadga"], rep.Targets["peerjs"] = k, p
	rep.finish()
	want := map[string]bool{
		"idle_memory_below_peerjs":     true,
		"relay_max_at_least_2x_peerjs": true,
		"relay_rate_p99_below_peerjs":  false,
		"open_faster_than_peerjs":      false,
	}
	for g, v := range want {
		if got, ok := rep.Goals[g]; !ok || got != v {
			t.Errorf("goal %s = %v, %v; want %v", g, got, ok, v)
		}
	}
	var b strings.Builder
	if err := rep.table(&b); err != nil || !strings.Contains(b.String(), "90000") {
		t.Fatalf("table: %v\n%s", err, b.String())
	}
}

func TestServerFrame(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 300)
	cases := []struct {
		name    string
		in      []byte
		n       int
		op      byte
		payload []byte
		bad     bool
	}{
		{"empty", nil, 0, 0, nil, false},
		{"short text", append([]byte{0x81, 2}, "hi"...), 4, opText, []byte("hi"), false},
		{"partial", []byte{0x81, 5, 'h'}, 0, 0, nil, false},
		{"16-bit length", append([]byte{0x81, 126, 1, 44}, long...), 304, opText, long, false},
		{"16-bit header cut", []byte{0x81, 126, 1}, 0, 0, nil, false},
		{"64-bit length", append([]byte{0x81, 127, 0, 0, 0, 0, 0, 0, 1, 44}, long...), 310, opText, long, false},
		{"ping", []byte{0x89, 1, 'p'}, 3, opPing, []byte("p"), false},
		{"close", []byte{0x88, 2, 3, 232}, 4, opClose, []byte{3, 232}, false},
		{"fragment", []byte{0x01, 1, 'a'}, 0, 0, nil, true},
		{"masked", []byte{0x81, 0x81, 0, 0, 0, 0, 'a'}, 0, 0, nil, true},
		{"reserved bit", []byte{0xc1, 1, 'a'}, 0, 0, nil, true},
		{"huge", []byte{0x81, 127, 0, 0, 0, 1, 0, 0, 0, 0}, 0, 0, nil, true},
	}
	for _, c := range cases {
		f, n, err := serverFrame(c.in)
		if (err != nil) != c.bad || n != c.n || (n > 0 && (f.op != c.op || !bytes.Equal(f.payload, c.payload))) {
			t.Errorf("%s: frame %+v, n %d, err %v", c.name, f, n, err)
		}
	}
	if closeCode([]byte{3, 232}) != 1000 || closeCode(nil) != 1005 {
		t.Error("closeCode")
	}
}
