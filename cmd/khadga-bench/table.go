//go:build linux

package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
)

// table prints a table per combination, one column per target, then the
// floors of every combination side by side.
func (r *report) table(w io.Writer) error {
	if r.Scale != nil {
		r.Scale.table(w)
		return nil
	}
	if r.Soak != nil {
		r.Soak.table(w)
		return nil
	}
	if len(r.Runs) == 0 {
		return nil // a scale run that failed before its figures
	}
	for _, c := range r.Runs {
		fmt.Fprintf(w, "\n== %s client over %s\n", c.Client, c.Scheme)
		if err := c.table(w, r.Settings); err != nil {
			return err
		}
	}
	return r.floorTable(w)
}

// table prints one combination's figures, errors and ratios.
func (c *comboResult) table(w io.Writer, s settings) error {
	var names []string
	for _, n := range []string{nameKhadga, nameKhadgaIdle, nameCluster, namePeerJS} {
		if c.Targets[n] != nil {
			names = append(names, n)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(label string, f func(*targetResult) string) {
		fmt.Fprint(tw, label, "\t")
		for _, n := range names {
			fmt.Fprint(tw, f(c.Targets[n]), "\t")
		}
		fmt.Fprintln(tw)
	}
	row("figure", func(*targetResult) string { return "" })
	fmt.Fprint(tw, "\t")
	for _, n := range names {
		fmt.Fprint(tw, n, "\t")
	}
	fmt.Fprintln(tw)
	row("presence feed", func(t *targetResult) string {
		if t.Presence {
			return "on"
		}
		return "off"
	})
	cluster := c.Targets[nameCluster] != nil
	for i, n := range s.Idle {
		idleRows(row, i, n)
		if cluster {
			natsIdleRow(row, i, n)
		}
	}
	row(fmt.Sprintf("open %d, %d dialers: conns/s", s.Open, s.Dialers), func(t *targetResult) string {
		if t.Open == nil {
			return "-"
		}
		return fmt.Sprintf("%.0f", t.Open.PerSecond)
	})
	relayRows(row, "relay max", cluster, func(t *targetResult) *relayResult { return t.RelayMax })
	relayRows(row, fmt.Sprintf("relay %d/s", s.Rate), cluster, func(t *targetResult) *relayResult { return t.RelayRate })
	row("failed phases", func(t *targetResult) string { return fmt.Sprint(len(t.Errors)) })
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range names {
		t := c.Targets[n]
		if t.Note != "" {
			fmt.Fprintf(w, "%s: %s\n", n, t.Note)
		}
		for _, phase := range slices.Sorted(maps.Keys(t.Errors)) {
			fmt.Fprintf(w, "%s %s: %s\n", n, phase, t.Errors[phase])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Ratios)) {
		fmt.Fprintf(w, "ratio %s (khadga/peerjs): %.3f\n", k, c.Ratios[k])
	}
	return nil
}

// idleRows prints the figures at the i-th idle count, n connections.
func idleRows(row func(string, func(*targetResult) string), i, n int) {
	f := func(fn func(*idleResult) string) func(*targetResult) string {
		return func(t *targetResult) string {
			if i >= len(t.Idle) {
				return "-"
			}
			return fn(&t.Idle[i])
		}
	}
	row(fmt.Sprintf("idle %d: KiB/conn", n), f(func(r *idleResult) string { return fmt.Sprintf("%.2f", r.PerConnBytes/1024) }))
	row(fmt.Sprintf("idle %d: marginal KiB/conn", n), f(func(r *idleResult) string { return fmt.Sprintf("%.2f", r.MarginalBytes/1024) }))
	row(fmt.Sprintf("idle %d: RSS MiB (before)", n), f(func(r *idleResult) string {
		return fmt.Sprintf("%.1f (%.1f)", float64(r.RSSBytes)/(1<<20), float64(r.RSSBeforeBytes)/(1<<20))
	}))
	row(fmt.Sprintf("idle %d: messages in (presence), KiB", n), f(func(r *idleResult) string {
		return fmt.Sprintf("%d (%d), %.0f", r.Received, r.Presence, float64(r.ReceivedBytes)/1024)
	}))
	row(fmt.Sprintf("idle %d: errors", n), f(func(r *idleResult) string {
		if len(r.Errors) == 0 && r.Dropped == 0 && r.HeartbeatErrors == 0 {
			return "0"
		}
		return fmt.Sprintf("%v dropped=%d heartbeat=%d", r.Errors, r.Dropped, r.HeartbeatErrors)
	}))
}

// natsIdleRow prints a cluster's NATS server's memory at the i-th idle
// count, n connections ("-" for the other targets).
func natsIdleRow(row func(string, func(*targetResult) string), i, n int) {
	row(fmt.Sprintf("idle %d: NATS RSS MiB (before), KiB/conn", n), func(t *targetResult) string {
		if i >= len(t.Idle) || t.Idle[i].NATSRSSBytes == 0 {
			return "-"
		}
		r := t.Idle[i]
		return fmt.Sprintf("%.1f (%.1f), %.2f", float64(r.NATSRSSBytes)/(1<<20), float64(r.NATSRSSBeforeBytes)/(1<<20), r.NATSPerConnBytes/1024)
	})
}

// relayRows prints one relay phase's figures; with a cluster, its NATS
// server's CPU too (the server's is then the sum over the nodes).
func relayRows(row func(string, func(*targetResult) string), label string, cluster bool, get func(*targetResult) *relayResult) {
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
	if cluster {
		row(label+": NATS CPU cores", f(func(r *relayResult) string { return fmt.Sprintf("%.2f", r.NATSCPUCores) }))
	}
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

// floorTable prints issue 12's floors, a column per combination: met or
// MISSED with the ratio khadga/PeerJS, "-" when a figure is missing; then
// issue 13's for khadga-cluster, if any combination measured it.
func (r *report) floorTable(w io.Writer) error {
	var rows []floorRow
	for _, f := range floors {
		rows = append(rows, floorRow{f.label, func(c *comboResult) (bool, bool, float64) {
			met, ok := c.Floors[f.name]
			return met, ok, c.Ratios[f.ratio]
		}})
	}
	if err := r.floorSection(w, "issue 12 floors (ratio khadga/peerjs)", rows); err != nil {
		return err
	}
	if !slices.ContainsFunc(r.Runs, func(c *comboResult) bool { return c.ClusterFloors != nil }) {
		return nil
	}
	rows = nil
	for _, f := range clusterFloors {
		rows = append(rows, floorRow{f.label, func(c *comboResult) (bool, bool, float64) {
			met, ok := c.ClusterFloors[f.name]
			return met, ok, c.ClusterFigures[f.figure]
		}})
	}
	procs := "Go's default GOMAXPROCS"
	if r.Settings.ClusterProcs > 0 {
		procs = fmt.Sprintf("GOMAXPROCS %d", r.Settings.ClusterProcs)
	}
	return r.floorSection(w, fmt.Sprintf("issue 13 floors (khadga-cluster: %d nodes and NATS, %s each)", r.Settings.Cluster, procs), rows)
}

// floorRow is one floor of a section: its label, and whether a
// combination met it, had the figure at all, and the figure.
type floorRow struct {
	label string
	get   func(*comboResult) (met, ok bool, figure float64)
}

// floorSection prints a table of floors, a column per combination.
func (r *report) floorSection(w io.Writer, title string, rows []floorRow) error {
	fmt.Fprintf(w, "\n== %s\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "floor\t")
	for _, c := range r.Runs {
		fmt.Fprint(tw, c.combo, "\t")
	}
	fmt.Fprintln(tw)
	for _, f := range rows {
		fmt.Fprint(tw, f.label, "\t")
		for _, c := range r.Runs {
			met, ok, x := f.get(c)
			switch {
			case !ok:
				fmt.Fprint(tw, "-\t")
			case met:
				fmt.Fprintf(tw, "met (%.2f)\t", x)
			default:
				fmt.Fprintf(tw, "MISSED (%.2f)\t", x)
			}
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}
