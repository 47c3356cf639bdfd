package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// report is everything one invocation measured; -json prints it whole.
type report struct {
	Time     string                   `json:"time"`
	Machine  machineInfo              `json:"machine"`
	Settings settings                 `json:"settings"`
	Targets  map[string]*targetResult `json:"targets"`
	// Ratios compare khadga with PeerJS (khadga / PeerJS) when both ran.
	Ratios map[string]float64 `json:"ratios,omitempty"`
	// Goals are issue 2's targets for khadga against PeerJS: true if met.
	Goals map[string]bool `json:"goals,omitempty"`
}

type machineInfo struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel,omitempty"`
	Note      string `json:"note"`
}

type settings struct {
	Idle      []int   `json:"idle_conns"`
	Heartbeat float64 `json:"heartbeat_s"`
	Settle    float64 `json:"settle_s"`
	Open      int     `json:"open_conns"`
	Dialers   int     `json:"dialers"`
	Pairs     int     `json:"pairs"`
	Duration  float64 `json:"duration_s"`
	Warmup    float64 `json:"warmup_s"`
	Rate      int     `json:"rate"`
	Window    int     `json:"window"`
	Size      int     `json:"payload_bytes"`
	Users     int     `json:"khadga_users"`
	Rounds    int     `json:"rounds"`
}

type targetResult struct {
	PID  int          `json:"pid,omitempty"`
	Idle []idleResult `json:"idle,omitempty"`
	// Open, RelayMax and RelayRate hold each figure's median over the
	// rounds (counts are summed); the *Rounds fields hold every round.
	Open            *openResult       `json:"open,omitempty"`
	RelayMax        *relayResult      `json:"relay_max,omitempty"`
	RelayRate       *relayResult      `json:"relay_rate,omitempty"`
	OpenRounds      []*openResult     `json:"open_rounds,omitempty"`
	RelayMaxRounds  []*relayResult    `json:"relay_max_rounds,omitempty"`
	RelayRateRounds []*relayResult    `json:"relay_rate_rounds,omitempty"`
	Errors          map[string]string `json:"errors,omitempty"`
}

type idleResult struct {
	Conns          int     `json:"conns"`
	RSSBeforeBytes int64   `json:"rss_before_bytes"`
	RSSBytes       int64   `json:"rss_bytes"`
	PerConnBytes   float64 `json:"per_conn_bytes"`
	// MarginalBytes is the RSS added per connection since the previous
	// count (since the baseline for the first): it is blind to a baseline
	// that the runtime shrinks or grows on its own.
	MarginalBytes   float64 `json:"marginal_bytes_per_conn"`
	OpenSeconds     float64 `json:"open_s"`
	Received        int64   `json:"received"`
	Dropped         int64   `json:"dropped"`
	HeartbeatErrors int64   `json:"heartbeat_errors"`
}

type openResult struct {
	Conns     int     `json:"conns"`
	Dialers   int     `json:"dialers"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"conns_per_s"`
}

type relayResult struct {
	Mode                     string  `json:"mode"` // max or rate
	Rounds                   int     `json:"rounds,omitempty"`
	Pairs                    int     `json:"pairs"`
	Window                   int     `json:"window,omitempty"`
	OfferedPerSecond         int     `json:"offered_per_s,omitempty"`
	PayloadBytes             int     `json:"payload_bytes"`
	FrameBytes               int     `json:"frame_bytes"`
	Seconds                  float64 `json:"seconds"`
	Sent                     int64   `json:"sent"`
	Received                 int64   `json:"received_in_window"`
	PerSecond                float64 `json:"signals_per_s"`
	P50ms                    float64 `json:"p50_ms"`
	P99ms                    float64 `json:"p99_ms"`
	P999ms                   float64 `json:"p999_ms"`
	Maxms                    float64 `json:"max_ms"`
	Samples                  int     `json:"samples"`
	ServerCPUCores           float64 `json:"server_cpu_cores,omitempty"`
	ServerCPUMicrosPerSignal float64 `json:"server_cpu_us_per_signal,omitempty"`
	ClientCPUCores           float64 `json:"client_cpu_cores"`
	// The server's read and write system calls per signal relayed, from
	// /proc/PID/io: how well it batches.
	ServerReadsPerSignal  float64          `json:"server_reads_per_signal,omitempty"`
	ServerWritesPerSignal float64          `json:"server_writes_per_signal,omitempty"`
	Dropped               int64            `json:"dropped_conns"`
	Errors                map[string]int64 `json:"errors"`
}

func newReport(cfg *config) *report {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return &report{
		Time: time.Now().UTC().Format(time.RFC3339),
		Machine: machineInfo{
			CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Kernel: strings.TrimSpace(string(kernel)),
			Note: "load client, khadga and PeerJS on the same machine; each phase runs on both targets back to back",
		},
		Settings: settings{
			Idle: cfg.Idle, Heartbeat: cfg.Heartbeat.Seconds(), Settle: cfg.Settle.Seconds(),
			Open: cfg.Open, Dialers: cfg.Dialers, Pairs: cfg.Pairs, Duration: cfg.Duration.Seconds(),
			Warmup: cfg.Warmup.Seconds(), Rate: cfg.Rate, Window: cfg.Window, Size: cfg.Size, Users: cfg.Users, Rounds: cfg.Rounds,
		},
		Targets: map[string]*targetResult{},
	}
}

// finish computes ratios and goals when both targets have figures.
func (r *report) finish() {
	k, p := r.Targets["khadga"], r.Targets["peerjs"]
	if k == nil || p == nil {
		return
	}
	r.Ratios, r.Goals = map[string]float64{}, map[string]bool{}
	if ki, pi := lastIdle(k), lastIdle(p); ki != nil && pi != nil && pi.PerConnBytes > 0 {
		r.Ratios["idle_bytes_per_conn"] = round(ki.PerConnBytes/pi.PerConnBytes, 3)
		r.Goals["idle_memory_below_peerjs"] = ki.PerConnBytes < pi.PerConnBytes
	}
	if k.RelayMax != nil && p.RelayMax != nil && p.RelayMax.PerSecond > 0 {
		r.Ratios["relay_max_signals_per_s"] = round(k.RelayMax.PerSecond/p.RelayMax.PerSecond, 3)
		r.Goals["relay_max_at_least_2x_peerjs"] = k.RelayMax.PerSecond >= 2*p.RelayMax.PerSecond
		if p.RelayMax.P99ms > 0 {
			r.Ratios["relay_max_p99"] = round(k.RelayMax.P99ms/p.RelayMax.P99ms, 3)
		}
	}
	if k.RelayRate != nil && p.RelayRate != nil && p.RelayRate.P99ms > 0 {
		r.Ratios["relay_rate_p50"] = round(k.RelayRate.P50ms/max(p.RelayRate.P50ms, 1e-9), 3)
		r.Ratios["relay_rate_p99"] = round(k.RelayRate.P99ms/p.RelayRate.P99ms, 3)
		r.Goals["relay_rate_p99_below_peerjs"] = k.RelayRate.P99ms < p.RelayRate.P99ms
	}
	if k.Open != nil && p.Open != nil && p.Open.PerSecond > 0 {
		r.Ratios["open_conns_per_s"] = round(k.Open.PerSecond/p.Open.PerSecond, 3)
		r.Goals["open_faster_than_peerjs"] = k.Open.PerSecond > p.Open.PerSecond
	}
}

func lastIdle(t *targetResult) *idleResult {
	if len(t.Idle) == 0 {
		return nil
	}
	return &t.Idle[len(t.Idle)-1]
}

// table prints the figures side by side, one column per target.
func (r *report) table(w io.Writer) error {
	names := []string{}
	for _, n := range []string{"khadga", "peerjs"} {
		if r.Targets[n] != nil {
			names = append(names, n)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(label string, f func(*targetResult) string) {
		fmt.Fprint(tw, label, "\t")
		for _, n := range names {
			fmt.Fprint(tw, f(r.Targets[n]), "\t")
		}
		fmt.Fprintln(tw)
	}
	row("", func(*targetResult) string { return "" })
	fmt.Fprint(tw, "figure\t")
	for _, n := range names {
		fmt.Fprint(tw, n, "\t")
	}
	fmt.Fprintln(tw)
	for i, n := range r.Settings.Idle {
		row(fmt.Sprintf("idle %d: KiB/conn", n), func(t *targetResult) string {
			if i >= len(t.Idle) {
				return "-"
			}
			return fmt.Sprintf("%.2f", t.Idle[i].PerConnBytes/1024)
		})
		row(fmt.Sprintf("idle %d: marginal KiB/conn", n), func(t *targetResult) string {
			if i >= len(t.Idle) {
				return "-"
			}
			return fmt.Sprintf("%.2f", t.Idle[i].MarginalBytes/1024)
		})
		row(fmt.Sprintf("idle %d: RSS MiB (before)", n), func(t *targetResult) string {
			if i >= len(t.Idle) {
				return "-"
			}
			return fmt.Sprintf("%.1f (%.1f)", float64(t.Idle[i].RSSBytes)/(1<<20), float64(t.Idle[i].RSSBeforeBytes)/(1<<20))
		})
	}
	row(fmt.Sprintf("open %d, %d dialers: conns/s", r.Settings.Open, r.Settings.Dialers), func(t *targetResult) string {
		if t.Open == nil {
			return "-"
		}
		return fmt.Sprintf("%.0f", t.Open.PerSecond)
	})
	relayRows(row, "relay max", func(t *targetResult) *relayResult { return t.RelayMax })
	relayRows(row, fmt.Sprintf("relay %d/s", r.Settings.Rate), func(t *targetResult) *relayResult { return t.RelayRate })
	row("errors", func(t *targetResult) string {
		if len(t.Errors) == 0 {
			return "none"
		}
		return fmt.Sprint(len(t.Errors), " phase(s) failed")
	})
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range names {
		for phase, e := range r.Targets[n].Errors {
			fmt.Fprintf(w, "%s %s: %s\n", n, phase, e)
		}
	}
	for k, v := range r.Ratios {
		fmt.Fprintf(w, "ratio %s (khadga/peerjs): %.3f\n", k, v)
	}
	for k, v := range r.Goals {
		fmt.Fprintf(w, "goal %s: %v\n", k, v)
	}
	return nil
}

func relayRows(row func(string, func(*targetResult) string), label string, get func(*targetResult) *relayResult) {
	f := func(fn func(*relayResult) string) func(*targetResult) string {
		return func(t *targetResult) string {
			if r := get(t); r != nil {
				return fn(r)
			}
			return "-"
		}
	}
	row(label+": signals/s", f(func(r *relayResult) string { return fmt.Sprintf("%.0f", r.PerSecond) }))
	row(label+": p50 / p99 ms", f(func(r *relayResult) string { return fmt.Sprintf("%.2f / %.2f", r.P50ms, r.P99ms) }))
	row(label+": server / client CPU cores", f(func(r *relayResult) string {
		return fmt.Sprintf("%.2f / %.2f", r.ServerCPUCores, r.ClientCPUCores)
	}))
	row(label+": server syscalls/signal (r+w)", f(func(r *relayResult) string {
		return fmt.Sprintf("%.2f + %.2f", r.ServerReadsPerSignal, r.ServerWritesPerSignal)
	}))
	row(label+": errors", f(func(r *relayResult) string {
		if len(r.Errors) == 0 && r.Dropped == 0 {
			return "0"
		}
		return fmt.Sprintf("%v dropped=%d", r.Errors, r.Dropped)
	}))
}

// round rounds x to d decimals, so that the JSON stays readable.
func round(x float64, d int) float64 {
	p := math.Pow(10, float64(d))
	return math.Round(x*p) / p
}
