//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// config is everything the flags set.
type config struct {
	Target     string
	URL        string
	PID        int
	ServerBin  string
	ServerArgs listFlag
	PeerJSDir  string
	Node       string
	JSON       bool
	Phases     map[string]bool
	Schemes    []string
	Clients    []string

	Idle      []int
	Heartbeat time.Duration
	Settle    time.Duration

	Open    int
	Dialers int

	Pairs    int
	Duration time.Duration
	Warmup   time.Duration
	Rate     int
	Window   int
	Size     int

	Users   int
	Rounds  int
	Verbose bool

	// Cluster is the nodes of the khadga-cluster target (0: none), on one
	// NATS server, the nats-server binary NATSBin (default: built).
	Cluster int
	NATSBin string
	// NodeProcs is the GOMAXPROCS of each cluster node and of NATS
	// (nodeProcsShare: their share of the cores; 0: Go's default).
	NodeProcs int
	// Scale, when set, is the scale run instead of the combinations:
	// Scale idle connections over ScaleNodes nodes from ScaleProcs load
	// processes (0: enough to keep each under maxConnsPerProcess), then
	// ScaleSignals signals between random peers on different nodes.
	Scale        int
	ScaleNodes   int
	ScaleProcs   int
	ScaleSignals int
	// Soak, when set, is the soak run instead of the combinations (see
	// soak.go): SoakClients clients churning at SoakRate operations/s
	// for Soak after SoakWarmup, the servers sampled every SoakEvery,
	// then a settle of at most SoakSettle.
	Soak        time.Duration
	SoakClients int
	SoakRate    float64
	SoakEvery   time.Duration
	SoakWarmup  time.Duration
	SoakSettle  time.Duration
	// SoakSingle soaks the single node too; false, with a cluster, soaks
	// only the cluster.
	SoakSingle bool
}

// nodeProcsShare as -node-procs gives each cluster process its share of
// the cores.
const nodeProcsShare = -1

// procsFor is the GOMAXPROCS of each process of a cluster of nodes nodes
// and one NATS server, 0 for Go's default: nodes that share one machine
// each take their share of its cores, as nodes on machines of their own,
// or in containers each limited to its share (which Go's GOMAXPROCS
// follows), would; each believing it has every core makes them hand work
// between threads that wait for the same cores.
func (c *config) procsFor(nodes int) int {
	if c.NodeProcs != nodeProcsShare {
		return c.NodeProcs
	}
	return max(1, runtime.NumCPU()/(nodes+1))
}

// allPhases lists the phases in the order they run.
var allPhases = []string{"idle", "open", "relay-max", "relay-rate"}

// Schemes (-schemes): plain WebSocket, or WebSocket over TLS.
const (
	schemeWS  = "ws"
	schemeWSS = "wss"
)

// Load clients (-clients); see client.go.
const (
	clientTuned = "tuned"
	clientPlain = "plain"
)

var (
	allSchemes = []string{schemeWS, schemeWSS}
	allClients = []string{clientTuned, clientPlain}
)

// combo is one combination of scheme and client: a run measures each with
// fresh servers.
type combo struct {
	Scheme string `json:"scheme"`
	Client string `json:"client"`
}

func (c combo) String() string { return c.Scheme + "/" + c.Client }

// combos lists the combinations a run measures, scheme by scheme.
func (c *config) combos() []combo {
	var out []combo
	for _, s := range c.Schemes {
		for _, cl := range c.Clients {
			out = append(out, combo{Scheme: s, Client: cl})
		}
	}
	return out
}

func parseConfig(args []string) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("khadga-bench", flag.ContinueOnError)
	fs.StringVar(&cfg.Target, "target", "both", "what to measure: khadga, peerjs or both (each phase on both, back to back)")
	fs.StringVar(&cfg.URL, "url", "", "khadga server to target (http://host:port or https://…, which sets -schemes); empty starts fresh ones")
	fs.IntVar(&cfg.PID, "pid", 0, "with -url: the server's process id, for its RSS (0: skip memory)")
	fs.StringVar(&cfg.ServerBin, "server-bin", "", "khadga binary to start (default: go build ./cmd/khadga into a temp dir)")
	fs.Var(&cfg.ServerArgs, "server-arg", "extra argument for the started khadga servers (repeatable; reported)")
	fs.StringVar(&cfg.PeerJSDir, "peerjs-dir", "", "directory of server.js and node_modules/peer (default: bench/peerjs in the module)")
	fs.StringVar(&cfg.Node, "node", "node", "Node.js binary for the PeerJS server")
	fs.BoolVar(&cfg.JSON, "json", false, "print all figures as one JSON object")
	phases := fs.String("phases", strings.Join(allPhases, ","), "phases to run: "+strings.Join(allPhases, ","))
	schemes := fs.String("schemes", strings.Join(allSchemes, ","), "schemes to measure: ws (plain TCP), wss (TLS, a self-signed certificate for 127.0.0.1)")
	clients := fs.String("clients", strings.Join(allClients, ","), "load clients: tuned (raw system calls, small buffers, own frame reader) and plain (gorilla/websocket as users run it)")
	idle := fs.String("idle", "1000,5000,10000", "idle connection counts for the memory phase")
	fs.DurationVar(&cfg.Heartbeat, "heartbeat", 5*time.Second, "heartbeat period of each idle connection")
	fs.DurationVar(&cfg.Settle, "settle", 10*time.Second, "wait at each idle count before reading RSS")
	fs.IntVar(&cfg.Open, "open", 1000, "connections to open in the open phase")
	fs.IntVar(&cfg.Dialers, "dialers", 50, "concurrent dialers")
	fs.IntVar(&cfg.Pairs, "pairs", 200, "concurrent pairs in the relay phases")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured length of each relay phase")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "unmeasured lead-in of each relay phase")
	fs.IntVar(&cfg.Rate, "rate", 10000, "total signals/s of the relay-rate phase")
	fs.IntVar(&cfg.Window, "window", 1, "relay-max: signals each pair keeps in flight (each one answered the moment it arrives)")
	fs.IntVar(&cfg.Size, "size", 1024, "bytes of each signal's payload (the data object)")
	fs.IntVar(&cfg.Users, "users", 4, "khadga accounts to spread the connections over (one token each)")
	fs.IntVar(&cfg.Rounds, "rounds", 3, "rounds of the open and relay phases (figures are medians)")
	fs.BoolVar(&cfg.Verbose, "v", false, "debug logging")
	fs.IntVar(&cfg.Cluster, "cluster", 0, "also measure a khadga cluster of this many nodes (khadga serve --nats, each a process of its own) on one NATS server, each pair's peers on different nodes (0: none)")
	fs.IntVar(&cfg.NodeProcs, "node-procs", nodeProcsShare, "GOMAXPROCS of each cluster node and of the NATS server, -cluster and -scale (-1: each one's share of the cores, max(1, cores / (nodes + 1)), as that many one-node machines would have; 0: Go's default, every core)")
	fs.StringVar(&cfg.NATSBin, "nats-bin", "", "nats-server binary for -cluster and -scale (default: go build github.com/nats-io/nats-server/v2 into a temp dir)")
	fs.IntVar(&cfg.Scale, "scale", 0, "instead of the phases: hold this many idle connections on a -scale-nodes cluster, signal between random peers on different nodes, report memory and NATS traffic (0: off)")
	fs.IntVar(&cfg.ScaleNodes, "scale-nodes", 5, "khadga nodes of the scale run")
	fs.IntVar(&cfg.ScaleProcs, "scale-procs", 0, "load processes of the scale run (0: enough that each holds at most 18,000 connections)")
	fs.IntVar(&cfg.ScaleSignals, "scale-signals", 5, "signals between random peers on different nodes in the scale run, each one asserted")
	soakFlags(fs, cfg)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	schemesSet := false
	fs.Visit(func(f *flag.Flag) { schemesSet = schemesSet || f.Name == "schemes" })
	var errs []error
	var err error
	if cfg.Idle, err = parseInts(*idle); err != nil {
		errs = append(errs, fmt.Errorf("-idle: %w", err))
	}
	ph, err := parseSet("-phases", *phases, allPhases)
	errs = append(errs, err)
	cfg.Phases = map[string]bool{}
	for _, p := range ph {
		cfg.Phases[p] = true
	}
	cfg.Clients, err = parseSet("-clients", *clients, allClients)
	errs = append(errs, err)
	cfg.Schemes, err = parseSet("-schemes", *schemes, allSchemes)
	errs = append(errs, err)
	if err == nil && cfg.URL != "" {
		errs = append(errs, cfg.schemesFromURL(schemesSet))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cfg, cfg.validate()
}

// schemesFromURL makes -schemes the scheme that the server at -url serves:
// it cannot be restarted with or without TLS.
func (c *config) schemesFromURL(set bool) error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("-url must be http://host:port or https://host:port, not %q", c.URL)
	}
	s := schemeWS
	if u.Scheme == "https" {
		s = schemeWSS
	}
	if set && !slices.Equal(c.Schemes, []string{s}) {
		return fmt.Errorf("-url %s serves %s only; -schemes %s needs servers the bench starts", c.URL, s, strings.Join(c.Schemes, ","))
	}
	c.Schemes = []string{s}
	return nil
}

func (c *config) validate() error {
	var errs []error
	switch c.Target {
	case "khadga", "peerjs", "both":
	default:
		errs = append(errs, fmt.Errorf("-target must be khadga, peerjs or both, not %q", c.Target))
	}
	if c.Open < 1 || c.Dialers < 1 || c.Pairs < 1 || c.Window < 1 || c.Users < 1 || c.Rate < 1 || c.Rounds < 1 {
		errs = append(errs, errors.New("-open, -dialers, -pairs, -window, -users, -rate and -rounds must be at least 1"))
	}
	if c.Size < 64 || c.Size > 60000 {
		errs = append(errs, errors.New("-size must be 64 to 60000 bytes"))
	}
	if c.Duration <= 0 || c.Heartbeat <= 0 || c.Warmup < 0 || c.Settle < 0 {
		errs = append(errs, errors.New("-duration and -heartbeat must be positive, -warmup and -settle not negative"))
	}
	if c.PID != 0 && c.URL == "" {
		errs = append(errs, errors.New("-pid needs -url"))
	}
	errs = append(errs, c.validateCluster(), c.validateSoak())
	return errors.Join(errs...)
}

// targetNames lists the targets a combination starts, in the order each
// phase visits them. khadga-idle is a second khadga server for the idle
// phase with the presence feed the other way; it runs no other phase.
func (c *config) targetNames() []string {
	var out []string
	if c.Target != namePeerJS {
		out = append(out, nameKhadga)
		if c.Phases["idle"] {
			out = append(out, nameKhadgaIdle)
		}
	}
	if c.Cluster > 0 && c.Target != namePeerJS {
		out = append(out, nameCluster)
	}
	if c.Target != nameKhadga {
		out = append(out, namePeerJS)
	}
	return out
}

func parseInts(s string) ([]int, error) {
	var out []int
	prev := 0
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= prev {
			return nil, fmt.Errorf("want increasing positive counts, got %q", s)
		}
		out, prev = append(out, n), n
	}
	return out, nil
}

// parseSet reads a comma-separated subset of all, returned in all's order.
func parseSet(name, s string, all []string) ([]string, error) {
	seen := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(all, f) {
			return nil, fmt.Errorf("%s: unknown value %q (choose from %s)", name, f, strings.Join(all, ","))
		}
		seen[f] = true
	}
	var out []string
	for _, v := range all {
		if seen[v] {
			out = append(out, v)
		}
	}
	return out, nil
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }
