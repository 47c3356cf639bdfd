//go:build linux

package main

import (
	"os"
	"runtime"
	"strings"
	"time"
)

// report is everything one invocation measured; -json prints it whole.
type report struct {
	Time     string      `json:"time"`
	Machine  machineInfo `json:"machine"`
	Settings settings    `json:"settings"`
	// Runs holds one result per combination of scheme and client, in the
	// order they ran, each with fresh servers.
	Runs []*comboResult `json:"runs"`
	// Scale is the scale run's (-scale), which runs instead of the
	// combinations.
	Scale *scaleResult `json:"scale,omitempty"`
	// Soak is the soak run's (-soak), which runs instead of the
	// combinations.
	Soak *soakResult `json:"soak,omitempty"`
}

type machineInfo struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel,omitempty"`
	Note      string `json:"note"`
	// LoadAvg is /proc/loadavg when the run started and when it ended:
	// the machine is shared.
	LoadAvg [2]string `json:"loadavg"`
}

type settings struct {
	Schemes   []string `json:"schemes"`
	Clients   []string `json:"clients"`
	Idle      []int    `json:"idle_conns"`
	Heartbeat float64  `json:"heartbeat_s"`
	Settle    float64  `json:"settle_s"`
	Open      int      `json:"open_conns"`
	Dialers   int      `json:"dialers"`
	Pairs     int      `json:"pairs"`
	Duration  float64  `json:"duration_s"`
	Warmup    float64  `json:"warmup_s"`
	Rate      int      `json:"rate"`
	Window    int      `json:"window"`
	Size      int      `json:"payload_bytes"`
	Users     int      `json:"khadga_users"`
	Rounds    int      `json:"rounds"`
	// What the started khadga servers run with beyond their defaults.
	MaxConnsPerUser int      `json:"khadga_max_conns_per_user"`
	ServerArgs      []string `json:"khadga_server_args,omitempty"`
	MessageRate     string   `json:"khadga_ws_message_rate"`
	// Cluster is -cluster's nodes; the scale run's settings are in its
	// result.
	Cluster int `json:"cluster_nodes,omitempty"`
	// ClusterProcs is the GOMAXPROCS of each node and of NATS (0: Go's
	// default, every core).
	ClusterProcs int `json:"cluster_gomaxprocs,omitempty"`
}

// comboResult is one combination's figures, the ratios khadga/PeerJS and
// issue 12's floors.
type comboResult struct {
	combo
	// Targets are khadga, khadga-idle (the idle phase with the presence
	// feed the other way) and peerjs.
	Targets map[string]*targetResult `json:"targets"`
	// Ratios are khadga / PeerJS, when both have the figure; the idle
	// ones are by presence feed (idle_presence_bytes_per_conn with it on,
	// idle_bytes_per_conn with it off), from whichever khadga had it so.
	Ratios map[string]float64 `json:"ratios,omitempty"`
	// Floors are issue 12's: true when khadga meets it.
	Floors map[string]bool `json:"floors,omitempty"`
	// ClusterFigures and ClusterFloors are issue 13's, for
	// khadga-cluster (-cluster N): its relay max over PeerJS's and over
	// khadga's, and its p99 at -rate in ms.
	ClusterFigures map[string]float64 `json:"cluster_figures,omitempty"`
	ClusterFloors  map[string]bool    `json:"cluster_floors,omitempty"`
}

// targetResult is what one target measured in one combination.
type targetResult struct {
	PID int `json:"pid,omitempty"`
	// Presence says whether the connections opened the presence feed.
	Presence bool         `json:"presence"`
	Note     string       `json:"note,omitempty"`
	Idle     []idleResult `json:"idle,omitempty"`
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
	MarginalBytes float64 `json:"marginal_bytes_per_conn"`
	OpenSeconds   float64 `json:"open_s"`
	// A cluster's RSS is the sum over its Nodes; its NATS server's RSS
	// is apart.
	Nodes              int     `json:"nodes,omitempty"`
	NATSRSSBeforeBytes int64   `json:"nats_rss_before_bytes,omitempty"`
	NATSRSSBytes       int64   `json:"nats_rss_bytes,omitempty"`
	NATSPerConnBytes   float64 `json:"nats_per_conn_bytes,omitempty"`
	// Received counts the messages the idle connections read (pongs;
	// presence lists and changes with presence on), since the phase began.
	Received        int64 `json:"received"`
	ReceivedBytes   int64 `json:"received_bytes"`
	Presence        int64 `json:"presence_received"` // of Received
	Dropped         int64 `json:"dropped"`
	HeartbeatErrors int64 `json:"heartbeat_errors"`
	// Errors counts the server's error answers by code (rate_limited, …).
	Errors map[string]int64 `json:"errors,omitempty"`
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
	// NATSCPUCores is a cluster's NATS server's; ServerCPUCores is then
	// the sum over its nodes.
	NATSCPUCores float64 `json:"nats_cpu_cores,omitempty"`
	// The server's read and write system calls per signal relayed, from
	// /proc/PID/io: how well it batches.
	ServerReadsPerSignal  float64          `json:"server_reads_per_signal,omitempty"`
	ServerWritesPerSignal float64          `json:"server_writes_per_signal,omitempty"`
	Dropped               int64            `json:"dropped_conns"`
	Errors                map[string]int64 `json:"errors"`
}

func newReport(cfg *config) *report {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	rate := "khadga serve's default"
	if strings.Contains(strings.Join(cfg.ServerArgs, " "), "--ws-message-") {
		rate = "set by khadga_server_args"
	}
	return &report{
		Time: time.Now().UTC().Format(time.RFC3339),
		Machine: machineInfo{
			CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Kernel: strings.TrimSpace(string(kernel)),
			LoadAvg: [2]string{loadAvg()},
			Note:    "load client, khadga and PeerJS on the same machine; each phase runs on every target back to back",
		},
		Settings: settings{
			Schemes: cfg.Schemes, Clients: cfg.Clients,
			Idle: cfg.Idle, Heartbeat: cfg.Heartbeat.Seconds(), Settle: cfg.Settle.Seconds(),
			Open: cfg.Open, Dialers: cfg.Dialers, Pairs: cfg.Pairs, Duration: cfg.Duration.Seconds(),
			Warmup: cfg.Warmup.Seconds(), Rate: cfg.Rate, Window: cfg.Window, Size: cfg.Size, Users: cfg.Users, Rounds: cfg.Rounds,
			MaxConnsPerUser: benchMaxConnsPerUser, ServerArgs: cfg.ServerArgs, MessageRate: rate,
			Cluster: cfg.Cluster, ClusterProcs: clusterProcs(cfg),
		},
	}
}

// clusterProcs is the GOMAXPROCS -cluster's processes run with, 0 without
// a cluster or at Go's default.
func clusterProcs(cfg *config) int {
	if cfg.Cluster == 0 {
		return 0
	}
	return cfg.procsFor(cfg.Cluster)
}

// floors are issue 12's floors for khadga against PeerJS, each a bound on
// one ratio (khadga / PeerJS).
var floors = []struct {
	name, label, ratio string
	met                func(ratio float64) bool
}{
	{"relay_max_at_least_2x_peerjs", "relay max >= 2x PeerJS", "relay_max_signals_per_s", func(x float64) bool { return x >= 2 }},
	{"relay_rate_p99_below_peerjs", "relay at -rate: p99 < PeerJS", "relay_rate_p99", func(x float64) bool { return x < 1 }},
	{"idle_memory_below_peerjs", "idle KiB/conn < PeerJS", "idle_bytes_per_conn", func(x float64) bool { return x < 1 }},
	{"idle_presence_memory_below_peerjs", "idle KiB/conn, presence on < PeerJS", "idle_presence_bytes_per_conn", func(x float64) bool { return x < 1 }},
	{"open_faster_than_peerjs", "open conns/s > PeerJS", "open_conns_per_s", func(x float64) bool { return x > 1 }},
}

// finish computes the ratios and checks the floors, for the figures that
// both khadga and PeerJS have. The idle floors take the figure at
// largestIdle connections only.
func (r *comboResult) finish(largestIdle int) {
	r.finishCluster()
	k, p := r.Targets[nameKhadga], r.Targets[namePeerJS]
	if p == nil {
		return
	}
	raw := map[string]float64{}
	// A figure of zero or less is no measurement (no latency samples, an
	// RSS that fell): it checks no floor.
	ratio := func(name string, num, den float64) {
		if num > 0 && den > 0 {
			raw[name] = num / den
		}
	}
	if pi := idleAt(p, largestIdle); pi != nil {
		for _, kt := range []*targetResult{k, r.Targets[nameKhadgaIdle]} {
			if ki := idleAt(kt, largestIdle); ki != nil {
				ratio(map[bool]string{false: "idle_bytes_per_conn", true: "idle_presence_bytes_per_conn"}[kt.Presence],
					ki.PerConnBytes, pi.PerConnBytes)
			}
		}
	}
	if k != nil && k.RelayMax != nil && p.RelayMax != nil {
		ratio("relay_max_signals_per_s", k.RelayMax.PerSecond, p.RelayMax.PerSecond)
		ratio("relay_max_p99", k.RelayMax.P99ms, p.RelayMax.P99ms)
	}
	if k != nil && k.RelayRate != nil && p.RelayRate != nil {
		ratio("relay_rate_p50", k.RelayRate.P50ms, p.RelayRate.P50ms)
		ratio("relay_rate_p99", k.RelayRate.P99ms, p.RelayRate.P99ms)
	}
	if k != nil && k.Open != nil && p.Open != nil {
		ratio("open_conns_per_s", k.Open.PerSecond, p.Open.PerSecond)
	}
	r.Ratios, r.Floors = map[string]float64{}, map[string]bool{}
	for name, x := range raw {
		r.Ratios[name] = round(x, 3)
	}
	for _, f := range floors {
		if x, ok := raw[f.ratio]; ok {
			r.Floors[f.name] = f.met(x)
		}
	}
}

// idleAt is t's idle figure at n connections, nil if it has none.
func idleAt(t *targetResult, n int) *idleResult {
	if t == nil {
		return nil
	}
	for i := range t.Idle {
		if t.Idle[i].Conns == n {
			return &t.Idle[i]
		}
	}
	return nil
}

// clusterFloors are issue 13's floors for khadga-cluster, each a bound on
// one of ClusterFigures.
var clusterFloors = []struct {
	name, label, figure string
	met                 func(float64) bool
}{
	{"cluster_relay_max_at_least_peerjs", "cross-node relay max >= PeerJS (ratio)", "relay_max_per_peerjs", func(x float64) bool { return x >= 1 }},
	{"cluster_relay_rate_p99_at_most_3ms", "cross-node p99 at -rate <= 3 ms (ms)", "relay_rate_p99_ms", func(x float64) bool { return x <= 3 }},
}

// finishCluster computes the cluster's figures and checks its floors.
// A figure of zero or less is no measurement and checks no floor.
func (r *comboResult) finishCluster() {
	c := r.Targets[nameCluster]
	if c == nil {
		return
	}
	r.ClusterFigures, r.ClusterFloors = map[string]float64{}, map[string]bool{}
	for name, other := range map[string]*targetResult{"relay_max_per_peerjs": r.Targets[namePeerJS], "relay_max_per_khadga": r.Targets[nameKhadga]} {
		if other != nil && c.RelayMax != nil && other.RelayMax != nil && c.RelayMax.PerSecond > 0 && other.RelayMax.PerSecond > 0 {
			r.ClusterFigures[name] = round(c.RelayMax.PerSecond/other.RelayMax.PerSecond, 3)
		}
	}
	if c.RelayRate != nil && c.RelayRate.P99ms > 0 {
		r.ClusterFigures["relay_rate_p99_ms"] = c.RelayRate.P99ms
	}
	for _, f := range clusterFloors {
		if x, ok := r.ClusterFigures[f.figure]; ok {
			r.ClusterFloors[f.name] = f.met(x)
		}
	}
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
