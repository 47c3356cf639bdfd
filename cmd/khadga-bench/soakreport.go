//go:build linux

// The soak run's figures, verdict and table.

package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// soakResult is the soak run: one result per target, and the verdict.
type soakResult struct {
	Targets []*soakTargetResult `json:"targets"`
	Pass    bool                `json:"pass"`
	Verdict string              `json:"verdict"`
}

// soakTargetResult is one soak on fresh servers.
type soakTargetResult struct {
	Name          string  `json:"name"`
	Nodes         int     `json:"nodes"`
	Clients       int     `json:"clients"`
	Rate          float64 `json:"ops_per_s"`
	Seconds       float64 `json:"seconds"`
	WarmupSeconds float64 `json:"warmup_s"`
	EverySeconds  float64 `json:"every_s"`
	// Baseline is the servers with every client of the warm-up gone;
	// Samples are taken during the churn; Final is the last read of the
	// settle, SettleSeconds after the last client closed.
	Baseline      soakSample   `json:"baseline"`
	Samples       []soakSample `json:"samples"`
	Final         soakSample   `json:"final"`
	Settled       bool         `json:"settled"`
	SettleLeft    []string     `json:"settle_left,omitempty"`
	SettleSeconds float64      `json:"settle_s"`
	// GrowthPerHour is each figure's least-squares slope over the
	// second half of the samples, per hour.
	GrowthPerHour map[string]float64 `json:"growth_per_hour,omitempty"`
	Warmup        soakOps            `json:"warmup_ops"`
	Ops           soakOps            `json:"ops"`
	Signals       soakSignals        `json:"signals"`
	Failures      []string           `json:"failures,omitempty"`
}

// judge fits the growth and lists what failed: a settle that did not
// come, a signal lost or answered twice, and what no ordinary user meets
// (a refused resume, a connection the server dropped, an error answer).
func (r *soakTargetResult) judge(cfg *config, left []string) {
	r.Settled, r.SettleLeft = len(left) == 0, left
	r.GrowthPerHour = growthPerHour(r.Samples, cfg.Soak)
	fail := func(format string, args ...any) { r.Failures = append(r.Failures, fmt.Sprintf(format, args...)) }
	if !r.Settled {
		fail("not settled %.0f s after the last client closed: %s", r.SettleSeconds, strings.Join(left, ", "))
	}
	if s := r.Signals; s.Lost > 0 || s.Twice > 0 {
		fail("%d of %d signals lost (neither delivered nor refused), %d with two fates", s.Lost, s.Sent, s.Twice)
	}
	for _, o := range []soakOps{r.Warmup, r.Ops} {
		if o.ResumesRefused > 0 || o.ServerDrops > 0 || o.DialErrors > 0 || o.CloseTimeouts > 0 || len(o.Errors) > 0 {
			fail("%d resumes refused, %d connections dropped by the server, %d dials failed, %d closes waited %v for their signals' fates, errors %v",
				o.ResumesRefused, o.ServerDrops, o.DialErrors, o.CloseTimeouts, closeWait, o.Errors)
		}
	}
}

// verdict sums up every target.
func (res *soakResult) verdict() {
	var fails []string
	var names []string
	for _, t := range res.Targets {
		names = append(names, t.Name)
		for _, f := range t.Failures {
			fails = append(fails, t.Name+": "+f)
		}
	}
	res.Pass = len(fails) == 0 && len(res.Targets) > 0
	switch {
	case len(res.Targets) == 0:
		res.Verdict = "soak FAILED: no target ran"
	case res.Pass:
		res.Verdict = fmt.Sprintf("soak PASSED: %s settled back to baseline, every signal accounted for", strings.Join(names, " and "))
	default:
		res.Verdict = "soak FAILED: " + strings.Join(fails, "; ")
	}
}

// table prints each target's samples, growth and counts, then the
// verdict.
func (res *soakResult) table(w io.Writer) {
	for _, t := range res.Targets {
		t.table(w)
	}
	fmt.Fprintf(w, "\n%s\n", res.Verdict)
}

func (t *soakTargetResult) table(w io.Writer) {
	fmt.Fprintf(w, "\n== soak: %s, %d node(s), %d clients at %.0f operations/s for %v (warm-up %v), sampled every %v\n",
		t.Name, t.Nodes, t.Clients, t.Rate, secs(t.Seconds), secs(t.WarmupSeconds), secs(t.EverySeconds))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "at s\tclients\tRSS MiB\theap MiB\theap low MiB\theap goal MiB\tgoroutines\tfds\tsessions\tremote\tconns\trooms\tmembers\tpending\tNATS MiB\tNATS msgs\t")
	row := func(label string, s soakSample) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t\n", label, s.Connected, mib(s.RSSBytes),
			mib(s.HeapInuseBytes), mib(s.HeapLowBytes), mib(s.HeapGoalBytes), s.Goroutines, s.FDs, s.Sessions, s.Remote, s.Conns, s.Rooms, s.Members, s.Pending, mib(s.NATSRSSBytes), s.NATSMessages)
	}
	row("baseline", t.Baseline)
	for _, s := range t.Samples {
		row(fmt.Sprintf("%.0f", s.At), s)
	}
	row(fmt.Sprintf("settle %.0f", t.SettleSeconds), t.Final)
	tw.Flush()
	if len(t.GrowthPerHour) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(t.GrowthPerHour)) {
			v := t.GrowthPerHour[k]
			if strings.HasSuffix(k, "_bytes") {
				parts = append(parts, fmt.Sprintf("%s %+.1f MiB/h", strings.TrimSuffix(k, "_bytes"), v/(1<<20)))
			} else {
				parts = append(parts, fmt.Sprintf("%s %+.1f/h", k, v))
			}
		}
		fmt.Fprintf(w, "growth over the second half (least squares): %s\n", strings.Join(parts, ", "))
	}
	o := t.Ops
	fmt.Fprintf(w, "operations: %d new sessions, %d resumes (%d refused), %d drops, %d clean closes, %d abandoned; %d joins, %d leaves, %d pings; %d messages in (%d presence), %d slow-reader stalls\n",
		o.Sessions, o.Resumes, o.ResumesRefused, o.Drops, o.Closes, o.Abandons, o.Joins, o.Leaves, o.Pings, o.Received, o.Presence, o.Stalls)
	s := t.Signals
	fmt.Fprintf(w, "signals: %d sent, %d delivered, %d refused %v, %d lost, %d with two fates\n", s.Sent, s.Delivered, s.Refused, s.RefusedCodes, s.Lost, s.Twice)
	if t.Settled {
		fmt.Fprintf(w, "settled: %.1f s after the last client closed\n", t.SettleSeconds)
	}
	for _, f := range t.Failures {
		fmt.Fprintf(w, "FAILED: %s\n", f)
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
