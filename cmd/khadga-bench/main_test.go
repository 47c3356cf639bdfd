//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
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
	for name, tg := range map[string]target{nameKhadga: &khadgaTarget{}, namePeerJS: &peerJSTarget{}} {
		t.Run(name, func(t *testing.T) {
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
			if name == namePeerJS {
				payload = m["payload"]
			}
			if len(payload) != 1024 {
				t.Errorf("payload is %d bytes, want 1024", len(payload))
			}
			got, ok := readStamp(b)
			if !ok || got != 1234567890123 {
				t.Errorf("readStamp = %d, %v; want 1234567890123", got, ok)
			}
			want := map[string]string{nameKhadga: "signal", namePeerJS: "OFFER"}[name]
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
	want := []combo{{schemeWS, clientTuned}, {schemeWS, clientPlain}, {schemeWSS, clientTuned}, {schemeWSS, clientPlain}}
	if got := cfg.combos(); !slices.Equal(got, want) {
		t.Fatalf("combos = %v, want every scheme with every client: %v", got, want)
	}
	if got := cfg.targetNames(); !slices.Equal(got, []string{nameKhadga, nameKhadgaIdle, namePeerJS}) {
		t.Fatalf("targets = %v", got)
	}
	for _, bad := range [][]string{
		{"-target", "nats"},
		{"-idle", "5000,1000"},
		{"-phases", "idle,dance"},
		{"-schemes", "ws,http"},
		{"-clients", "tuned,fast"},
		{"-url", "ftp://127.0.0.1:1"},
		{"-url", "http://127.0.0.1:1", "-schemes", "wss"},
		{"-url", "http://127.0.0.1:1", "-schemes", "ws,wss"},
		{"-size", "10"},
		{"-pid", "12"},
		{"extra"},
		{"-cluster", "1"},
		{"-cluster", "2", "-url", "http://127.0.0.1:1"},
		{"-cluster", "2", "-target", "peerjs"},
		{"-scale", "5"},
		{"-scale", "1000", "-cluster", "2"},
		{"-scale", "1000", "-scale-nodes", "1"},
		{"-soak", "1m", "-scale", "1000"},
		{"-soak", "1m", "-url", "http://127.0.0.1:1"},
		{"-soak", "1m", "-target", "peerjs"},
		{"-soak", "-1m"},
		{"-soak", "1m", "-soak-clients", "1"},
		{"-soak", "1m", "-soak-every", "0s"},
		{"-soak", "1m", "-soak-single=false"},
	} {
		if _, err := parseConfig(bad); err == nil {
			t.Errorf("parseConfig(%q) accepted", bad)
		}
	}
	for _, tt := range []struct {
		args    []string
		combos  []combo
		targets []string
	}{
		{[]string{"-schemes", " wss , ws", "-clients", "plain"}, []combo{{schemeWS, clientPlain}, {schemeWSS, clientPlain}}, nil},
		{[]string{"-url", "https://127.0.0.1:1", "-clients", "tuned"}, []combo{{schemeWSS, clientTuned}}, nil},
		{[]string{"-url", "http://127.0.0.1:1", "-schemes", "ws", "-clients", "plain,plain"}, []combo{{schemeWS, clientPlain}}, nil},
		{[]string{"-phases", "open,relay-max", "-schemes", "ws", "-clients", "tuned"}, []combo{{schemeWS, clientTuned}}, []string{nameKhadga, namePeerJS}},
		{[]string{"-target", "khadga", "-schemes", "ws", "-clients", "tuned"}, []combo{{schemeWS, clientTuned}}, []string{nameKhadga, nameKhadgaIdle}},
		{[]string{"-target", "peerjs", "-schemes", "ws", "-clients", "tuned"}, []combo{{schemeWS, clientTuned}}, []string{namePeerJS}},
		{[]string{"-cluster", "3", "-phases", "relay-max", "-schemes", "ws", "-clients", "tuned"}, []combo{{schemeWS, clientTuned}}, []string{nameKhadga, nameCluster, namePeerJS}},
	} {
		cfg, err := parseConfig(tt.args)
		if err != nil {
			t.Errorf("parseConfig(%q): %v", tt.args, err)
			continue
		}
		if got := cfg.combos(); !slices.Equal(got, tt.combos) {
			t.Errorf("parseConfig(%q): combos %v, want %v", tt.args, got, tt.combos)
		}
		if got := cfg.targetNames(); tt.targets != nil && !slices.Equal(got, tt.targets) {
			t.Errorf("parseConfig(%q): targets %v, want %v", tt.args, got, tt.targets)
		}
	}
}

func TestProcFS(t *testing.T) {
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

// tinyConfig runs every phase at a size that takes seconds; args come on
// top. The relay window is a second, so that a loaded machine still
// delivers signals inside it.
func tinyConfig(t *testing.T, args ...string) *config {
	cfg, err := parseConfig(append([]string{
		"-idle", "20,40", "-settle", "0s", "-heartbeat", "200ms", "-open", "30", "-dialers", "5",
		"-pairs", "4", "-duration", "1s", "-warmup", "100ms", "-rate", "400", "-users", "2", "-rounds", "2",
	}, args...))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runTiny runs cfg and checks that every combination it asked for
// produced figures on every target.
func runTiny(t *testing.T, cfg *config) *report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := run(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(rep.Runs), len(cfg.combos()); got != want {
		t.Fatalf("%d combinations measured, want %d", got, want)
	}
	for i, c := range rep.Runs {
		if c.combo != cfg.combos()[i] {
			t.Errorf("run %d is %v, want %v", i, c.combo, cfg.combos()[i])
		}
		for _, name := range cfg.targetNames() {
			t.Run(c.combo.String()+"/"+name, func(t *testing.T) {
				checkResult(t, c.combo, name, c.Targets[name], cfg.Rounds)
			})
		}
	}
	for _, want := range []string{"issue 12 floors", `"runs": [`} {
		cfg.JSON = strings.HasPrefix(want, `"`)
		var b strings.Builder
		if err := writeReport(&b, cfg, rep); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), want) {
			t.Errorf("report (json %v) lacks %q:\n%s", cfg.JSON, want, b.String())
		}
	}
	return rep
}

// checkResult asserts that every phase produced figures: khadga-idle runs
// the idle phase only; khadga's connections open the presence feed with
// the plain client, khadga-idle's with the tuned one, PeerJS's never, and
// only those that open it get presence.
func checkResult(t *testing.T, cb combo, name string, res *targetResult, rounds int) {
	t.Helper()
	if res == nil {
		t.Fatal("no figures")
	}
	plain := cb.Client == clientPlain
	if want := map[string]bool{nameKhadga: plain, nameKhadgaIdle: !plain, nameCluster: plain}[name]; res.Presence != want {
		t.Errorf("presence feed %v, want %v", res.Presence, want)
	}
	if len(res.Errors) > 0 {
		t.Fatalf("phases failed: %v", res.Errors)
	}
	if len(res.Idle) != 2 || res.Idle[1].Conns != 40 || res.Idle[1].RSSBytes <= 0 || res.Idle[1].Dropped != 0 || len(res.Idle[1].Errors) != 0 {
		t.Errorf("idle = %+v", res.Idle)
	}
	if len(res.Idle) == 2 {
		if presence := res.Idle[1].Presence; res.Presence && presence < 40 || !res.Presence && presence != 0 {
			t.Errorf("idle connections read %d presence messages", presence)
		}
	}
	if name == nameKhadgaIdle {
		if res.Open != nil || res.RelayMax != nil || res.RelayRate != nil {
			t.Errorf("the idle-only server ran more than the idle phase: %+v", res)
		}
		return
	}
	if res.Open == nil || res.Open.Conns != 30 || res.Open.PerSecond <= 0 {
		t.Errorf("open = %+v", res.Open)
	}
	if len(res.OpenRounds) != rounds || len(res.RelayMaxRounds) != rounds || len(res.RelayRateRounds) != rounds {
		t.Errorf("rounds: open %d, relay max %d, relay rate %d; want %d each", len(res.OpenRounds), len(res.RelayMaxRounds), len(res.RelayRateRounds), rounds)
	}
	for _, r := range []*relayResult{res.RelayMax, res.RelayRate} {
		if r == nil || r.Received == 0 || r.Samples == 0 || r.P50ms <= 0 || r.P99ms < r.P50ms || len(r.Errors) > 0 || r.Dropped > 0 {
			t.Errorf("relay = %+v", r)
		}
	}
}

// peerJSInstalled says whether the PeerJS server can run here.
func peerJSInstalled(t *testing.T, cfg *config) bool {
	if _, err := exec.LookPath(cfg.Node); err != nil {
		t.Log("node not installed")
		return false
	}
	if _, err := peerJSDir(""); err != nil {
		t.Log(err)
		return false
	}
	return true
}

// The runs against real servers take seconds each, mostly waiting for a
// steady RSS, so they run in parallel; they check that every phase works,
// not its figures.

// TestPeerJS measures PeerJS alone, over ws with the tuned client (its own
// frame reader), in two rounds.
func TestPeerJS(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a Node.js server")
	}
	cfg := tinyConfig(t, "-target", "peerjs", "-schemes", "ws", "-clients", "tuned")
	if !peerJSInstalled(t, cfg) {
		t.Skip("PeerJS not available")
	}
	runTiny(t, cfg)
}

// TestKhadga measures an in-process server with both clients. Its RSS is
// the test's, so the idle figures only show that the phase runs.
func TestKhadga(t *testing.T) {
	t.Parallel()
	// Four pairs as fast as they go exceed the default 200 messages/s per
	// connection; this test checks the bench, not the limit. The idle
	// phase runs twice on this one server, so a user's connections from the
	// first may still be closing when the second opens its own.
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{
		MessageRate: 1e6, MessageBurst: 1e6, MaxConnsPerUser: 1000}})
	cfg := tinyConfig(t, "-target", "khadga", "-url", s.URL, "-pid", strconv.Itoa(os.Getpid()), "-rounds", "1")
	rep := runTiny(t, cfg)
	if note := rep.Runs[0].Targets[nameKhadgaIdle].Note; note == "" {
		t.Error("the presence figures do not say that they share the -url server")
	}
}

// TestSpawnedWSSPlain is the smoke run of a wss combination: khadga started
// by the bench with its certificate (and PeerJS with the same, when
// installed), measured with the plain client.
func TestSpawnedWSSPlain(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and starts khadga")
	}
	// As in TestKhadga, the relay phases of this test would exceed the
	// default rate; the flag also shows in the report.
	cfg := tinyConfig(t, "-schemes", "wss", "-clients", "plain", "-rounds", "1",
		"-server-arg=--ws-message-rate=1000000", "-server-arg=--ws-message-burst=1000000")
	if !peerJSInstalled(t, cfg) {
		cfg.Target = nameKhadga
	}
	rep := runTiny(t, cfg)
	if rep.Settings.MessageRate != "set by khadga_server_args" || rep.Settings.MaxConnsPerUser != benchMaxConnsPerUser {
		t.Errorf("settings = %+v", rep.Settings)
	}
	c := rep.Runs[0]
	if c.Scheme != schemeWSS || c.Client != clientPlain {
		t.Errorf("measured %v", c.combo)
	}
	// The relay and open figures are always positive; the idle ones at 40
	// connections are noise that may be negative, which checks no floor.
	if cfg.Target == "both" {
		for _, f := range []string{"relay_max_at_least_2x_peerjs", "relay_rate_p99_below_peerjs", "open_faster_than_peerjs"} {
			if _, ok := c.Floors[f]; !ok {
				t.Errorf("floor %s not checked: %v", f, c.Floors)
			}
		}
	}
}

func TestFloors(t *testing.T) {
	k := &targetResult{
		Idle:            []idleResult{{Conns: 5000, PerConnBytes: 9000}, {Conns: 10000, PerConnBytes: 4000}},
		OpenRounds:      []*openResult{{PerSecond: 3000}, {PerSecond: 5000}, {PerSecond: 4000}},
		RelayMaxRounds:  []*relayResult{{PerSecond: 90000, P99ms: 3, Errors: map[string]int64{"rate_limited": 1}}, {PerSecond: 80000, P99ms: 5}, {PerSecond: 100000, P99ms: 4}},
		RelayRateRounds: []*relayResult{{PerSecond: 10000, P50ms: 0.2, P99ms: 2}},
	}
	kp := &targetResult{Presence: true, Idle: []idleResult{{Conns: 5000, PerConnBytes: 1000}, {Conns: 10000, PerConnBytes: 6000}}}
	p := &targetResult{
		Idle:            []idleResult{{Conns: 5000, PerConnBytes: 5600}, {Conns: 10000, PerConnBytes: 5600}},
		OpenRounds:      []*openResult{{PerSecond: 4500}},
		RelayMaxRounds:  []*relayResult{{PerSecond: 42000, P99ms: 9}},
		RelayRateRounds: []*relayResult{{PerSecond: 10000, P50ms: 0.3, P99ms: 1.8}},
	}
	for _, r := range []*targetResult{k, kp, p} {
		r.summarize()
	}
	if k.Open.PerSecond != 4000 || k.RelayMax.PerSecond != 90000 || k.RelayMax.P99ms != 4 || k.RelayMax.Errors["rate_limited"] != 1 || k.RelayMax.Rounds != 3 {
		t.Fatalf("medians: open %+v, relay %+v", k.Open, k.RelayMax)
	}
	c := &comboResult{combo: combo{schemeWSS, clientPlain}, Targets: map[string]*targetResult{nameKhadga: k, nameKhadgaIdle: kp, namePeerJS: p}}
	c.finish(10000)
	want := map[string]bool{
		"idle_memory_below_peerjs":          true,
		"idle_presence_memory_below_peerjs": false, // at 10,000, not at 5,000
		"relay_max_at_least_2x_peerjs":      true,
		"relay_rate_p99_below_peerjs":       false,
		"open_faster_than_peerjs":           false,
	}
	if !maps.Equal(c.Floors, want) {
		t.Errorf("floors = %v, want %v", c.Floors, want)
	}
	if c.Ratios["relay_max_signals_per_s"] != 2.143 || c.Ratios["idle_presence_bytes_per_conn"] != 1.071 {
		t.Errorf("ratios = %v", c.Ratios)
	}
	// A missing figure checks no floor, nor does a p99 without samples.
	k.Idle = k.Idle[:1]
	k.RelayRate.P99ms = 0
	c.finish(10000)
	if _, ok := c.Floors["idle_memory_below_peerjs"]; ok {
		t.Errorf("idle floor checked without the figure at 10,000: %v", c.Floors)
	}
	if _, ok := c.Floors["relay_rate_p99_below_peerjs"]; ok {
		t.Errorf("p99 floor checked without khadga's p99: %v", c.Floors)
	}
	rep := newReport(tinyConfig(t))
	rep.Runs = []*comboResult{c}
	var b strings.Builder
	if err := rep.table(&b); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"plain client over wss", "90000", "MISSED (1.07)", "met (2.14)"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, b.String())
		}
	}
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"runs":[{"scheme":"wss","client":"plain","targets":{`) {
		t.Errorf("JSON does not group by combination: %.200s", js)
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

// TestBenchCert checks the wss certificate: it verifies for 127.0.0.1
// against the pool the clients use (and not against the system's alone),
// its key pair loads, and the key file is the owner's only.
func TestBenchCert(t *testing.T) {
	bc, err := writeBenchCert(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(bc.certFile, bc.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: bc.roots(false), DNSName: "127.0.0.1"}); err != nil {
		t.Errorf("does not verify for 127.0.0.1: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: bc.roots(false), DNSName: "localhost"}); err == nil {
		t.Error("verifies for localhost too")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: x509.NewCertPool(), DNSName: "127.0.0.1"}); err == nil {
		t.Error("verifies without being trusted")
	}
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("key is %T, want ECDSA", leaf.PublicKey)
	}
	fi, err := os.Stat(bc.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
}
