package recorder

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// CPU budget. Decoding is the recorder's work that a sender controls: a
// consenting peer can send frames that cost libvpx far more than a
// camera's (garbage key frames declaring the largest picture allowed took
// 40 to 140 ms each here, where a 1080p camera frame takes a few), and
// Opus packets whose times make libopus conceal up to 120 ms before each.
// Every track's decoder shares the machine's cores, so one such track
// slowed every other peer's recording, and their frames were dropped.
//
// So each track has a budget: the CPU time its work took (a video frame's
// decoding, sampling, resizing and conversion; an audio packet's
// concealment and decoding), summed over the last Config.BudgetWindow, may
// not exceed Config.CPUBudget of one core over that window; and a peer's
// tracks in a room together may take twice that (peerBudgetTracks), so
// that a peer cannot keep four tracks just under the budget each. A track
// over either is stopped for good: its clip is finished, its packets are
// read and dropped until it ends (it keeps its slot), it is logged once,
// and its report says why (TrackReport.Stopped). A peer over its budget
// stays over while the recorder keeps its record (until it leaves): each
// of its tracks stops at its next frame or packet, and a new track at its
// first, so that it cannot trade a stopped track for a fresh budget.
// Other peers' tracks are not touched.
//
// The work is measured in CPU time of the thread that did it, not in wall
// time: wall time also counts the time the thread waited for a core,
// which is what other tracks (a hostile one above all) cost it, so under
// load an honest track would pay for the load a hostile one made. The
// goroutine is locked to its thread for the measured call, so the thread
// is its own; the decoders are single-threaded, so that thread did all of
// the work. Metering costs two reads of the thread's CPU clock
// (cputime_linux.go), system calls (the vDSO does not serve that
// clock): 3.5 µs a frame or packet on the 2-core VM of
// docs/benchmarks.md (BenchmarkBudgetMeter), against 2.5 to 7 ms for a
// 720p or 1080p frame, and 0.02% of a core for an Opus track's 50 packets
// a second.

// Budget defaults.
const (
	// DefaultCPUBudget is the share of one core each track may take on
	// average. An honest 1080p stream took at most 21% of a core here at
	// 30 fps and 34% at 60, 720p at 30 fps 10% (docs/benchmarks.md,
	// Recorder).
	DefaultCPUBudget = 0.5
	// DefaultBudgetWindow is the span the budget is averaged over.
	DefaultBudgetWindow = 5 * time.Second
)

// errOverBudget: a track's work took more CPU time than its budget.
var errOverBudget = errors.New("recorder: the track's decoding took more CPU time than its budget")

// Why the recorder stopped recording a track before it ended, or never
// started (TrackReport.Stopped).
const (
	// StopCPUBudget: decoding the track took more than Config.CPUBudget
	// of a core over Config.BudgetWindow.
	StopCPUBudget = "cpu budget"
	// StopTooManyWaiting: the track found no free slot, and too many
	// tracks, or too many of its peer's, waited for one already
	// (Config.MaxWaiting); it was not recorded at all.
	StopTooManyWaiting = "too many tracks waiting"
)

// budgetSlots is how many parts a window is kept in: the window slides
// a tenth of itself at a time.
const budgetSlots = 10

// peerBudgetTracks is how many tracks' budgets a peer's tracks have
// together: a camera and a shared screen, both 1080p, fit; one peer's
// four tracks (its most) just under a track's budget each do not.
const peerBudgetTracks = 2

// cpuMeter sums CPU time over a sliding window and says when the sum went
// over its limit, which it remembers.
type cpuMeter struct {
	mu    sync.Mutex
	limit time.Duration // CPU time allowed per window; 0: none
	slot  time.Duration // window / budgetSlots
	epoch time.Time
	used  [budgetSlots]time.Duration // by slot, the newest at cur
	cur   int64                      // slot number since epoch
	total atomic.Int64               // ns, since the meter was made
	over  atomic.Bool
}

// newCPUMeter makes a meter allowing share of a core over window; with
// share <= 0 it only measures.
func newCPUMeter(share float64, window time.Duration, now time.Time) *cpuMeter {
	m := &cpuMeter{slot: max(window/budgetSlots, 1), epoch: now}
	if share > 0 {
		m.limit = time.Duration(share * float64(window))
	}
	return m
}

// add counts d of CPU time at now and reports whether the meter is over
// its limit.
func (m *cpuMeter) add(d time.Duration, now time.Time) bool {
	m.total.Add(int64(d))
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := int64(now.Sub(m.epoch) / m.slot); n > m.cur {
		for i := m.cur + 1; i <= n && i <= m.cur+budgetSlots; i++ {
			m.used[i%budgetSlots] = 0
		}
		m.cur = n
	}
	m.used[m.cur%budgetSlots] += d
	var sum time.Duration
	for _, u := range m.used {
		sum += u
	}
	if m.limit > 0 && sum > m.limit {
		m.over.Store(true)
	}
	return m.over.Load()
}

// trackBudget meters one track's CPU time, against the track's own
// budget and its peer's. One goroutine at a time measures (the track's
// reader); any may ask whether it is over and what it used.
type trackBudget struct {
	track *cpuMeter
	peer  *cpuMeter // the peer's tracks together; nil: none
}

// begin starts measuring work on the calling goroutine, which end must
// follow on the same goroutine.
func (b *trackBudget) begin() time.Duration {
	runtime.LockOSThread()
	return threadCPU()
}

// end adds the CPU time since begin to the meters at now and reports
// whether the track is over its budget or its peer's.
func (b *trackBudget) end(start time.Duration, now time.Time) bool {
	d := threadCPU() - start
	runtime.UnlockOSThread()
	over := b.track.add(d, now)
	if b.peer != nil && b.peer.add(d, now) {
		over = true
	}
	return over
}

// exceeded reports whether the track, or its peer, went over its budget;
// a nil budget never does.
func (b *trackBudget) exceeded() bool {
	return b != nil && (b.track.over.Load() || b.peer != nil && b.peer.over.Load())
}

// overWhat says which budget a track that exceeded went over: "track" or
// "peer".
func (b *trackBudget) overWhat() string {
	if b.track.over.Load() {
		return "track"
	}
	return "peer"
}

// cpu is the track's CPU time measured so far; 0 for a nil budget.
func (b *trackBudget) cpu() time.Duration {
	if b == nil {
		return 0
	}
	return time.Duration(b.track.total.Load())
}
