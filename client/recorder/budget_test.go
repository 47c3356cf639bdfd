package recorder

import (
	"testing"
	"time"
)

// TestCPUMeterWindow: the meter sums the last window's CPU time, forgets
// what slid out of it, and stays over once it went over.
func TestCPUMeterWindow(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	cases := []struct {
		name string
		adds []struct{ cpu, at time.Duration }
		over bool
	}{
		{"under", []struct{ cpu, at time.Duration }{{300 * time.Millisecond, 0}, {150 * time.Millisecond, time.Second}}, false},
		{"over within the window", []struct{ cpu, at time.Duration }{{300 * time.Millisecond, 0}, {300 * time.Millisecond, 1900 * time.Millisecond}}, true},
		{"the first slid out", []struct{ cpu, at time.Duration }{{300 * time.Millisecond, 0}, {300 * time.Millisecond, 2100 * time.Millisecond}}, false},
		{"long after", []struct{ cpu, at time.Duration }{{400 * time.Millisecond, 0}, {400 * time.Millisecond, time.Hour}}, false},
		{"one call over", []struct{ cpu, at time.Duration }{{501 * time.Millisecond, 0}}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newCPUMeter(0.25, 2*time.Second, t0) // 0.5 s a window
			var over bool
			var total time.Duration
			for _, a := range c.adds {
				over = m.add(a.cpu, at(a.at))
				total += a.cpu
			}
			if over != c.over {
				t.Errorf("over %v, want %v", over, c.over)
			}
			if got := time.Duration(m.total.Load()); got != total {
				t.Errorf("total %v, want %v", got, total)
			}
			if c.over && !m.add(0, at(10*time.Hour)) {
				t.Error("the meter forgot it went over")
			}
		})
	}
	if newCPUMeter(0, time.Second, t0).add(time.Hour, t0) {
		t.Error("a meter without a budget went over")
	}
}

// TestTrackBudgetMeasuresCPUNotWall: the budget counts the time the work
// ran, not the time it waited; and a track over its peer's budget is
// over, however little it used itself.
func TestTrackBudgetMeasuresCPUNotWall(t *testing.T) {
	now := time.Now()
	b := &trackBudget{track: newCPUMeter(0, time.Second, now), peer: newCPUMeter(0.5, time.Second, now)}
	start := b.begin()
	time.Sleep(100 * time.Millisecond) // waiting, as for a busy core
	b.end(start, time.Now())
	if b.cpu() > 20*time.Millisecond {
		t.Errorf("100 ms asleep metered as %v of CPU", b.cpu())
	}
	start = b.begin()
	spin := time.Now()
	for time.Since(spin) < 100*time.Millisecond {
	}
	b.end(start, time.Now())
	// A loaded machine gives the spinning thread less than all of its
	// 100 ms; some of it, always.
	if b.cpu() < 10*time.Millisecond || b.cpu() > 150*time.Millisecond {
		t.Errorf("100 ms of spinning metered as %v of CPU", b.cpu())
	}
	if b.exceeded() {
		t.Fatal("over before the peer's budget was spent")
	}
	b.peer.add(time.Second, time.Now()) // the peer's other tracks
	if !b.exceeded() || b.overWhat() != "peer" {
		t.Errorf("exceeded %v (%s) after the peer went over", b.exceeded(), b.overWhat())
	}
	var none *trackBudget
	if none.exceeded() || none.cpu() != 0 {
		t.Error("a nil budget is over or used CPU")
	}
}

// BenchmarkBudgetMeter is what metering costs a frame or packet: begin
// and end with nothing between (two reads of the thread's CPU clock, the
// thread lock, the window's sum).
func BenchmarkBudgetMeter(b *testing.B) {
	now := time.Now()
	m := &trackBudget{track: newCPUMeter(0.5, 5*time.Second, now), peer: newCPUMeter(1, 5*time.Second, now)}
	for b.Loop() {
		m.end(m.begin(), now)
	}
}
