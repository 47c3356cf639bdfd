package recorder

import (
	"math"
	"testing"
	"time"
)

func TestSamplerPicksByCaptureTime(t *testing.T) {
	cases := []struct {
		name  string
		fps   float64
		times []int64 // µs
		kept  []int64
	}{
		{"30 to 10", 10, seq(0, 33333, 10), []int64{0, 99999, 199998, 299997}},
		{"all", 0, []int64{0, 5, 7}, []int64{0, 5, 7}},
		{"gap skips grid points", 10, []int64{0, 100000, 450000, 500000, 550000, 600000}, []int64{0, 100000, 450000, 500000, 600000}},
		{"jitter within tolerance", 10, []int64{0, 98000, 130000, 197000, 260000, 301000}, []int64{0, 98000, 197000, 301000}},
		{"time jumps back", 10, []int64{5000000, 5100000, 0, 100000}, []int64{5000000, 5100000, 0, 100000}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := NewSampler(c.fps)
			var got []int64
			for _, ts := range c.times {
				if s.Keep(ts) {
					got = append(got, ts)
				}
			}
			if len(got) != len(c.kept) {
				t.Fatalf("kept %v, want %v", got, c.kept)
			}
			for i := range got {
				if got[i] != c.kept[i] {
					t.Fatalf("kept %v, want %v", got, c.kept)
				}
			}
		})
	}
}

func seq(start, step int64, n int) []int64 {
	v := make([]int64, n)
	for i := range v {
		v[i] = start + int64(i)*step
	}
	return v
}

func TestClockUnwrapsRTPTime(t *testing.T) {
	c := NewClock(90000)
	arrival := time.Unix(1700000000, 0)
	start := uint32(0xFFFFFFFF - 4500) // wraps after 50 ms
	if got := c.Time(start, arrival); got != arrival.UnixMicro() {
		t.Fatalf("first frame at %d, want arrival %d", got, arrival.UnixMicro())
	}
	// Arrival time of later frames must not matter, within MaxClockSkew:
	// only RTP time does.
	late := arrival.Add(MaxClockSkew - time.Second)
	for i, want := range []int64{100000, 200000, 150000} {
		ts := start + uint32(want*90/1000)
		if got := c.Time(ts, late) - arrival.UnixMicro(); got != want {
			t.Errorf("frame %d at +%d µs, want +%d", i, got, want)
		}
	}
}

// TestClockBoundsHostileRTPTimes: a sender's RTP times that jump by half
// the 32-bit range, run backwards, or stall cannot give capture times more
// than MaxClockSkew from the frames' arrival (they gave times years off,
// and past 4295 jumps an int64 overflow).
func TestClockBoundsHostileRTPTimes(t *testing.T) {
	cases := []struct {
		name string
		step func(i int) uint32 // RTP ticks from frame i to the next
	}{
		{"half the range forward", func(int) uint32 { return 1<<31 - 1 }},
		{"a second backwards", func(int) uint32 { return math.MaxUint32 - 90000 + 1 }},
		{"forward and back", func(i int) uint32 { return uint32(int32(90000*20) * int32(1-2*(i%2))) }},
		{"stalled", func(int) uint32 { return 0 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := NewClock(90000)
			arrival := time.Unix(1700000000, 0)
			var rtpTS uint32 = 12345
			for i := range 10000 {
				got := clock.Time(rtpTS, arrival)
				if d := time.Duration(got-arrival.UnixMicro()) * time.Microsecond; d > MaxClockSkew || d < -MaxClockSkew {
					t.Fatalf("frame %d: capture time %v from its arrival", i, d)
				}
				rtpTS += c.step(i)
				arrival = arrival.Add(33 * time.Millisecond)
			}
		})
	}
}

func TestQueueDropsOldest(t *testing.T) {
	q := NewQueue(3)
	var rgb [][]byte
	for i := 0; i < 5; i++ {
		rgb = append(rgb, []byte{byte(i)})
		if !q.Push(Frame{RGB: rgb[i], TS: int64(i)}) {
			t.Fatal("push refused on an open queue")
		}
	}
	if q.Dropped() != 2 || q.Len() != 3 {
		t.Fatalf("dropped %d, len %d; want 2, 3", q.Dropped(), q.Len())
	}
	q.Close()
	if q.Push(Frame{TS: 9}) {
		t.Error("push accepted after close")
	}
	for want := int64(2); want < 5; want++ {
		<-q.Ready()
		f, ok, _ := q.Pop()
		if !ok || f.TS != want {
			t.Fatalf("pop %v %v, want frame %d", f.TS, ok, want)
		}
	}
	select {
	case <-q.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("closed, drained queue not ready")
	}
	if _, ok, done := q.Pop(); ok || !done {
		t.Fatalf("drained closed queue: ok %v done %v", ok, done)
	}
	// The dropped frames' buffers come back for reuse, oldest first.
	for i := 0; i < 2; i++ {
		if b := q.Buffer(1); len(b) != 1 || &b[0] != &rgb[i][0] {
			t.Fatalf("buffer %d of len %d is not dropped frame %d's", i, len(b), i)
		}
	}
}
