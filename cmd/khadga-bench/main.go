// Command khadga-bench measures a khadga signaling server, and the PeerJS
// server as a yardstick, under the loads of issue 2:
//
//  1. idle: server memory (RSS) per idle authenticated connection at 1,000,
//     5,000 and 10,000 connections, each sending a heartbeat every 5 s;
//  2. open: the time to open and authenticate 1,000 connections with 50
//     dialers;
//  3. relay-max: a 1 KiB signal relayed between 200 concurrent pairs for
//     10 s as fast as possible (signals/s, p50/p99 latency);
//  4. relay-rate: the same at a fixed 10,000 signals/s in total (p50/p99).
//
// By default it builds the server from ./cmd/khadga into a temporary
// directory and runs it as a separate process (so that its RSS is the
// server's alone) on a temporary data directory, and starts the PeerJS
// server (bench/peerjs, npm package "peer") beside it. Each phase then runs
// on both targets back to back, and the open and relay phases run -rounds
// times with the order alternating, so that the two sets of figures come
// from the same conditions on a shared machine; the summary figures are
// medians over the rounds:
//
//	go run ./cmd/khadga-bench                  # both targets, a table
//	go run ./cmd/khadga-bench -json            # one JSON object
//	go run ./cmd/khadga-bench -target khadga -url http://127.0.0.1:8080 -pid 1234
//
// Latency is measured by a send timestamp inside each signal's payload; the
// load client runs on the same machine as the server.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
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
}

// allPhases lists the phases in the order they run.
var allPhases = []string{"idle", "open", "relay-max", "relay-rate"}

func main() {
	cfg, err := parseConfig(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "khadga-bench:", err)
		os.Exit(2)
	}
	level := slog.LevelInfo
	if cfg.Verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg, log)
	if rep != nil {
		if werr := writeReport(os.Stdout, cfg, rep); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "khadga-bench:", err)
		os.Exit(1)
	}
}

func parseConfig(args []string) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("khadga-bench", flag.ContinueOnError)
	fs.StringVar(&cfg.Target, "target", "both", "what to measure: khadga, peerjs or both (each phase on both, back to back)")
	fs.StringVar(&cfg.URL, "url", "", "khadga server to target (http://host:port); empty builds and starts one")
	fs.IntVar(&cfg.PID, "pid", 0, "with -url: the server's process id, for its RSS (0: skip memory)")
	fs.StringVar(&cfg.ServerBin, "server-bin", "", "khadga binary to start (default: go build ./cmd/khadga into a temp dir)")
	fs.Var(&cfg.ServerArgs, "server-arg", "extra argument for the started khadga server (repeatable)")
	fs.StringVar(&cfg.PeerJSDir, "peerjs-dir", "", "directory of server.js and node_modules/peer (default: bench/peerjs in the module)")
	fs.StringVar(&cfg.Node, "node", "node", "Node.js binary for the PeerJS server")
	fs.BoolVar(&cfg.JSON, "json", false, "print all figures as one JSON object")
	phases := fs.String("phases", strings.Join(allPhases, ","), "phases to run: "+strings.Join(allPhases, ","))
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
	fs.IntVar(&cfg.Users, "users", 4, "khadga accounts to spread the connections over (one login each)")
	fs.IntVar(&cfg.Rounds, "rounds", 3, "rounds of the open and relay phases (figures are medians)")
	fs.BoolVar(&cfg.Verbose, "v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if cfg.Idle, err = parseInts(*idle); err != nil {
		return nil, fmt.Errorf("-idle: %w", err)
	}
	if cfg.Phases, err = parsePhases(*phases); err != nil {
		return nil, err
	}
	return cfg, cfg.validate()
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
	return errors.Join(errs...)
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

func parsePhases(s string) (map[string]bool, error) {
	m := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		ok := false
		for _, p := range allPhases {
			ok = ok || p == f
		}
		if !ok {
			return nil, fmt.Errorf("-phases: unknown phase %q (phases: %s)", f, strings.Join(allPhases, ","))
		}
		m[f] = true
	}
	return m, nil
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// run measures each target in turn. A failed phase is recorded in the report
// and the run goes on, so that one limit does not hide the other figures.
func run(ctx context.Context, cfg *config, log *slog.Logger) (*report, error) {
	raiseNoFile(log)
	rep := newReport(cfg)
	names := []string{cfg.Target}
	if cfg.Target == "both" {
		names = []string{"khadga", "peerjs"}
	}
	res, err := measure(ctx, cfg, names, log)
	for name, r := range res {
		rep.Targets[name] = r
	}
	rep.finish()
	return rep, err
}

func writeReport(w io.Writer, cfg *config, rep *report) error {
	if cfg.JSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.table(w)
}
