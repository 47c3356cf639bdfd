package recorder

import "time"

// Sampler picks frames at a fixed rate by their RTP capture time, never by
// when they arrive: network jitter and bursts do not change which frames are
// kept. Kept frames sit on a grid of 1/fps from the first frame; a frame is
// kept when it is the first at or after a grid point (with a quarter-period
// tolerance for capture clocks that run slightly early).
type Sampler struct {
	period int64 // µs; 0 keeps every frame
	tol    int64
	due    int64
	init   bool
}

// NewSampler makes a sampler for fps frames per second; fps <= 0 keeps every frame.
func NewSampler(fps float64) *Sampler {
	s := &Sampler{}
	if fps > 0 {
		s.period = int64(float64(time.Second/time.Microsecond) / fps)
		s.tol = s.period / 4
	}
	return s
}

// Keep reports whether the frame captured at t µs is kept.
func (s *Sampler) Keep(t int64) bool {
	if s.period == 0 {
		return true
	}
	// Start the grid at the first frame, and again if capture time jumps
	// back (a restarted sender).
	if !s.init || t < s.due-2*s.period-s.tol {
		s.init, s.due = true, t
	}
	if t < s.due-s.tol {
		return false
	}
	// Skip grid points that passed without a frame (loss, or a source
	// slower than fps), in one step however many.
	s.due += s.period
	if s.due <= t+s.tol {
		s.due += ((t+s.tol-s.due)/s.period + 1) * s.period
	}
	return true
}

// Clock turns 32-bit RTP timestamps into Unix microseconds: the first
// frame's arrival time plus the RTP time elapsed since, so that intervals
// are the sender's capture intervals. It unwraps timestamp wrap-around.
//
// The RTP times are the sender's to choose: a time more than MaxClockSkew
// from the frame's arrival (a sender whose RTP time jumps, runs backwards or
// far too fast) starts the clock again from that frame's arrival, so every
// time it gives is within MaxClockSkew of when the frame came.
type Clock struct {
	rate    int64 // RTP clock rate, Hz
	base    int64 // Unix µs of the first frame
	first   int64 // unwrapped RTP time of the first frame
	last    uint32
	unwrap  int64
	started bool
	resets  int64
}

// MaxClockSkew bounds how far a frame's capture time may be from its
// arrival; past it the Clock starts again from the arrival.
const MaxClockSkew = 30 * time.Second

// NewClock makes a clock for an RTP clock rate (90000 for video).
func NewClock(rate uint32) *Clock { return &Clock{rate: int64(max(rate, 1))} }

// Time maps an RTP timestamp of a frame that arrived at now.
func (c *Clock) Time(rtpTS uint32, now time.Time) int64 {
	arrival := now.UnixMicro()
	if c.started {
		// The signed difference handles wrap-around in either direction.
		c.unwrap += int64(int32(rtpTS - c.last))
		c.last = rtpTS
		// unwrap-first is the RTP time since the clock started, within
		// MaxClockSkew and one step (2³¹ ticks) of the time elapsed since:
		// the product overflows only after years.
		ts := c.base + (c.unwrap-c.first)*1_000_000/c.rate
		if d := ts - arrival; d <= MaxClockSkew.Microseconds() && d >= -MaxClockSkew.Microseconds() {
			return ts
		}
		c.resets++
	}
	c.started = true
	c.last = rtpTS
	c.unwrap = int64(rtpTS)
	c.first = c.unwrap
	c.base = arrival
	return c.base
}

// Resets counts the times the clock started again (see MaxClockSkew).
func (c *Clock) Resets() int64 { return c.resets }
