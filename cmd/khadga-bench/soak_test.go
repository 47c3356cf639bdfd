//go:build linux

package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// soakTestArgs make the soak run take seconds: a resume window of 6 s, so
// that abandoned sessions end inside the settle, yet a dropped client is
// back inside it. A client drops its socket at once but forgets it only
// when its reader ends, and a reader may be in one of its stalls of up to
// 3 s (soakClient.read); then it reconnects at its next step, up to 450
// ms later. With 2 s, a drop during a long stall came back too late and
// counted as a refused resume (once, in a CI run).
var soakTestArgs = []string{"-soak", "3s", "-soak-warmup", "500ms", "-soak-every", "400ms", "-soak-clients", "24",
	"-soak-rate", "80", "-soak-settle", "20s", "-users", "2", "-server-arg=--resume-window=6s"}

// soakTest starts a test of the soak run: it skips with -short, and
// returns the small soak's config and a context that bounds the test.
func soakTest(t *testing.T) (*config, context.Context) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and starts khadga")
	}
	cfg, err := parseConfig(soakTestArgs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return cfg, ctx
}

// TestSoak is the soak run in small on one node: clients churn, the
// server is sampled, every signal has its fate, and the server settles
// back to its baseline.
func TestSoak(t *testing.T) {
	cfg, ctx := soakTest(t)
	rep, err := run(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Soak
	if s == nil || len(rep.Runs) != 0 || len(s.Targets) != 1 || !s.Pass {
		t.Fatalf("soak %+v, %d combinations", s, len(rep.Runs))
	}
	r := s.Targets[0]
	if r.Name != nameKhadga || len(r.Samples) < 3 || r.Baseline.Goroutines == 0 || r.Baseline.FDs == 0 || !r.Settled {
		t.Errorf("target %s: %d samples, baseline %+v, settled %v", r.Name, len(r.Samples), r.Baseline, r.Settled)
	}
	if busy := r.Samples[len(r.Samples)/2]; busy.Sessions == 0 || busy.Connected == 0 || busy.Goroutines <= r.Baseline.Goroutines {
		t.Errorf("a sample mid-run shows no clients: %+v", busy)
	}
	for _, smp := range r.Samples {
		if smp.HeapLowBytes <= 0 || smp.HeapLowBytes > smp.HeapInuseBytes {
			t.Errorf("heap low water %d, in use %d", smp.HeapLowBytes, smp.HeapInuseBytes)
		}
	}
	if o := r.Ops; o.Sessions == 0 || o.Resumes == 0 || o.Joins == 0 || o.Closes == 0 {
		t.Errorf("the clients did not churn: %+v", o)
	}
	if sig := r.Signals; sig.Sent == 0 || sig.Delivered == 0 || sig.Lost != 0 || sig.Sent != sig.Delivered+sig.Refused {
		t.Errorf("signals %+v", sig)
	}
	var b strings.Builder
	if err := writeReport(&b, cfg, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"== soak: khadga", "baseline", "settle", "soak PASSED"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	js, err := json.Marshal(rep)
	if err != nil || !strings.Contains(string(js), `"soak":{"targets":[{"name":"khadga"`) || !strings.Contains(string(js), `"goroutines":`) {
		t.Errorf("JSON %.300s: %v", js, err)
	}
}

// TestSoakSettle checks the verdict: a client left open keeps a server
// from settling, and the run fails saying what was left; once it closes,
// the server settles.
func TestSoakSettle(t *testing.T) {
	cfg, ctx := soakTest(t)
	log := testLogger(t)
	env, err := prepare(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer env.close()
	cl := newClient(combo{Scheme: schemeWS, Client: clientPlain}, nil)
	defer cl.close()
	st, err := startSoakTarget(ctx, cfg, env, cl, 0, log)
	if err != nil {
		t.Fatal(err)
	}
	defer st.stop()
	base, err := st.baseline(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ws, _, err := st.dial(0, 0, "", false)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	final, left := st.settle(ctx, time.Second, base, 1500*time.Millisecond)
	res := &soakResult{Targets: []*soakTargetResult{{Name: nameKhadga, Final: final}}}
	res.Targets[0].judge(cfg, left)
	res.verdict()
	if res.Pass || !strings.Contains(res.Verdict, "soak FAILED: khadga: not settled") || !strings.Contains(res.Verdict, "1 sessions") {
		t.Errorf("with a client open: verdict %q", res.Verdict)
	}
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	if err := ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, left := st.settle(ctx, time.Second, base, 20*time.Second); left != nil {
		t.Errorf("after the client closed: left %v", left)
	}
}

func TestSlope(t *testing.T) {
	x := []float64{0, 30, 60, 90}
	if k, ok := slope(x, []float64{10, 13, 16, 19}); !ok || k != 0.1 {
		t.Errorf("slope = %v, %v; want 0.1", k, ok)
	}
	if _, ok := slope([]float64{5, 5}, []float64{1, 2}); ok {
		t.Error("a slope over one x")
	}
	var samples []soakSample
	for i, g := range []int{50, 99, 100, 101, 102} {
		s := soakSample{At: float64(i * 900)}
		s.Goroutines = g
		samples = append(samples, s)
	}
	// The second half of an hour's run: 1 goroutine every 900 s.
	if got := growthPerHour(samples, time.Hour)["goroutines"]; got != 4 {
		t.Errorf("growth %v, want 4/h over the second half", got)
	}
	// A fit needs three samples in the second half.
	if got := growthPerHour(samples[:4], time.Hour); got != nil {
		t.Errorf("growth fitted from two samples: %v", got)
	}
	var b strings.Builder
	(&soakTargetResult{Samples: samples, GrowthPerHour: growthPerHour(samples, time.Hour)}).table(&b)
	if !strings.Contains(b.String(), "growth over the second half (least squares): ") || !strings.Contains(b.String(), "goroutines +4.0/h") {
		t.Errorf("table:\n%s", b.String())
	}
}
