package gctune

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		least       int
		floor, base uint64
		want        int
	}{
		{50, 16 * mib, 0, 400},          // before the first cycle: the cap
		{50, 16 * mib, 1 * mib, 400},    // 1600% wanted, capped at 4 MiB * 400% = 16 MiB
		{50, 16 * mib, 5 * mib, 320},    // 16 MiB of headroom over 5 MiB
		{50, 16 * mib, 6 * mib, 267},    // rounded up, never below the floor
		{50, 16 * mib, 32 * mib, 50},    // GOGC=50 gives exactly the floor
		{50, 16 * mib, 200 * mib, 50},   // a large heap keeps GOGC=50
		{100, 2 * mib, 1 * mib, 100},    // a floor below the runtime's own minimum changes nothing
		{50, 64 * mib, 100 * mib, 64},   // 64 MiB over 100 MiB
		{50, 64 * mib, 1000 * mib, 50},  // ...but never below the least
		{400, 16 * mib, 1 * mib, 400},   // the least above the cap wins
		{800, 16 * mib, 100 * mib, 800}, // and above what is needed
	} {
		if got := percentFor(c.least, c.floor, c.base); got != c.want {
			t.Errorf("percentFor(%d, %d MiB, %d MiB) = %d, want %d", c.least, c.floor>>20, c.base>>20, got, c.want)
		}
	}
}

// After each collection the tuner sets the percent from the heap that
// collection found live: a large live heap brings it down to what the
// floor needs, and freeing it brings it back up.
func TestTunesAfterEachCollection(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	const floor = 64 << 20
	tu := Start(50, floor)
	defer tu.Stop()

	live := make([]byte, 256<<20) // pointer-free: untouched pages cost no RSS
	waitPercent(t, tu, func(p int) bool { return p == 50 })
	runtime.KeepAlive(live)
	live = nil
	waitPercent(t, tu, func(p int) bool { return p > 200 })

	tu.Stop()
	if p := debug.SetGCPercent(100); p != 50 {
		t.Errorf("after Stop the percent is %d, want the configured 50", p)
	}
}

// waitPercent collects until the tuner's percent satisfies ok, each
// collection being the event the tuner acts on.
func waitPercent(t *testing.T, tu *Tuner, ok func(int) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(tu.Percent()) {
		if time.Now().After(deadline) {
			t.Fatalf("percent stayed %d", tu.Percent())
		}
		runtime.GC()
		runtime.Gosched() // the cleanup goroutine runs after the cycle
	}
}
