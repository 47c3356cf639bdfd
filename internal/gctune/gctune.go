// Package gctune gives the garbage collector a floor of headroom: after
// every collection it sets the GC percent so that the heap may grow by at
// least a fixed number of bytes before the next one, and by the configured
// percent once that is more.
//
// Why: khadga serve runs at GOGC=50 because its memory is mostly idle
// connections, and at 10,000 of them a smaller heap saves about 1.4 KiB
// each. But with a small live heap (a few MiB while hundreds of clients
// connect) 50% is 2 to 3 MiB of headroom, and the collector then
// ran some 40 times a second, each time scanning every goroutine's stack
// and shrinking the idle ones, which grew again at their next message:
// collection and stack copying took about 30% of the server's CPU while
// connections opened. A floor keeps GOGC=50's memory where the heap is
// large and spaces collections out where it is small. The runtime has no
// setting for this (its own floor, 4 MiB at GOGC=100, scales down with
// GOGC), so the percent is set again after each cycle.
package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// runtimeMinimum is the runtime's own least heap goal at GOGC=100; it
// scales with the percent, so a percent set for a tiny heap must be capped
// or that minimum, not the floor, would decide (400 MiB at 10000%).
const runtimeMinimum = 4 << 20

// Tuner keeps the headroom floor until Stop.
type Tuner struct {
	percent int
	floor   uint64

	mu      sync.Mutex // serialises tune; cleanups may overlap
	samples []metrics.Sample
	current int
	stopped atomic.Bool
}

// Start sets the GC percent to percent, raised after every collection as
// far as it takes for the heap to grow by floor bytes before the next
// one. The percent applies to the live heap plus goroutine stacks and
// globals, as GOGC does.
func Start(percent int, floor uint64) *Tuner {
	t := &Tuner{percent: percent, floor: floor, current: percent, samples: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/scan/stack:bytes"},
		{Name: "/gc/scan/globals:bytes"},
	}}
	debug.SetGCPercent(percent)
	t.tune()
	t.arm()
	return t
}

// Stop stops tuning and puts the percent back to the configured one.
func (t *Tuner) Stop() {
	t.stopped.Store(true)
	t.mu.Lock()
	defer t.mu.Unlock()
	debug.SetGCPercent(t.percent)
	t.current = t.percent
}

// Percent is the GC percent the tuner set last.
func (t *Tuner) Percent() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.current
}

// sentinel is allocated for the collector to find unreachable: its cleanup
// runs after the cycle that freed it. It holds a pointer so that it is not
// batched with other tiny objects, whose cleanups may never run.
type sentinel struct{ _ *byte }

func (t *Tuner) arm() {
	runtime.AddCleanup(new(sentinel), func(t *Tuner) {
		if t.stopped.Load() {
			return
		}
		t.tune()
		t.arm()
	}, t)
}

// tune sets the percent for the next cycle from what the last one found live.
func (t *Tuner) tune() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped.Load() {
		return
	}
	metrics.Read(t.samples)
	var base uint64
	for _, s := range t.samples {
		if s.Value.Kind() == metrics.KindUint64 {
			base += s.Value.Uint64()
		}
	}
	p := percentFor(t.percent, t.floor, base)
	if p != t.current {
		debug.SetGCPercent(p)
		t.current = p
	}
}

// percentFor is the smallest percent, at least least, that lets a heap
// whose collector base is base bytes grow by floor bytes; but no more
// than the percent at which the runtime's own minimum goal reaches the
// floor.
func percentFor(least int, floor, base uint64) int {
	limit := floor * 100 / runtimeMinimum
	need := limit
	if base > 0 {
		need = min((floor*100+base-1)/base, limit)
	}
	return max(least, int(need))
}
