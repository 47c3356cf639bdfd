package recorder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/khadga/khadga/client/media/opus"
)

// Audio. Each consenting peer's Opus audio is decoded by libopus straight
// to AudioRate mono float32 and kept on a timeline of the peer's own (its
// audio RTP time), and each clip of the peer's video takes the span of its
// frames from it, placed by the streams' sender reports (avsync.go): sample
// i of KEY.audio.npy is at AudioMeta.StartUS + i·10⁶/AudioRate µs, on the
// same clock as ts.npy, and the audio runs to one frame interval past the
// last frame. Samples that never arrived are zeros, counted in
// AudioMeta.Missing. A peer that sends audio without video has nothing to
// go with: its audio is not written.

// AudioRate is the sampling rate of recorded audio.
const AudioRate = 16000

// audioRTPRate is Opus' RTP clock; one sample at AudioRate is 3 of its ticks.
const (
	audioRTPRate   = opus.RTPClockRate
	ticksPerSample = audioRTPRate / AudioRate
)

// Audio limits.
const (
	// maxAudioKept bounds the audio held per peer for clips still being
	// recorded (audioKept); a clip longer than that gets zeros for its
	// beginning.
	maxAudioKept = 10 * time.Minute
	// maxConceal is the longest gap packet loss concealment fills; longer
	// gaps (a sender pausing, DTX silence) stay zeros.
	maxConceal = 120 * time.Millisecond
	// audioWait bounds how long a finished clip waits for audio still on
	// its way.
	audioWait = 300 * time.Millisecond
)

// AudioMeta describes a clip's KEY.audio.npy (float32 [Samples], mono).
type AudioMeta struct {
	Rate int `json:"rate"`
	// StartUS is the time of sample 0, Unix µs on ts.npy's clock: the
	// clip's first frame, or later when the clip spans more than the audio
	// kept per peer (audioKept): then the audio is the span's last part.
	StartUS int64 `json:"start_us"`
	Samples int   `json:"samples"`
	// Missing counts the samples no audio arrived for (zeros): before the
	// peer's audio started, lost beyond concealment, or not sent.
	Missing int `json:"missing"`
	// Sync says how the audio was placed against the frames: "rtcp" by
	// both streams' sender reports, or "arrival" by each stream's first
	// packet (before the reports came).
	Sync string `json:"sync"`
}

// audioTimeline holds one peer's decoded audio by position: its audio
// RTP time divided by ticksPerSample, unwrapped. It is a ring of the
// audio kept per peer (audioKept), made when the peer's first audio
// packet comes: consent alone costs none; NaN marks a sample that did
// not arrive.
type audioTimeline struct {
	mu      sync.Mutex
	size    int       // of the ring, in samples
	buf     []float32 // the ring, nil before the first packet
	start   int64     // oldest position kept
	end     int64     // one past the newest written
	began   bool
	lastRaw uint32 // unwrapping the 32-bit RTP time
	lastPos int64  // lastRaw unwrapped, in RTP ticks
	// The first packet's position and arrival, for "arrival" placement.
	anchorTick int64
	anchorUS   int64
	active     atomic.Int32  // audio tracks writing now
	more       chan struct{} // closed and replaced at every write
}

func newAudioTimeline(kept time.Duration) *audioTimeline {
	return &audioTimeline{size: int(int64(AudioRate) * int64(kept) / int64(time.Second)), more: make(chan struct{})}
}

// audioKept is how much audio to keep per peer for clips of clipFrames
// frames at fps (0: every frame, taken as at least 5 a second): twice a
// clip and 10 s, between 30 s and maxAudioKept.
func audioKept(clipFrames int, fps float64) time.Duration {
	if fps <= 0 {
		fps = 5
	}
	d := 2*time.Duration(float64(clipFrames)/fps*float64(time.Second)) + 10*time.Second
	return min(max(d, 30*time.Second), maxAudioKept)
}

// unwrapLocked turns a 32-bit RTP time into ticks on a line that does not
// wrap, near the last one seen.
func (a *audioTimeline) unwrapLocked(raw uint32) int64 {
	if !a.began {
		return int64(raw)
	}
	return a.lastPos + int64(int32(raw-a.lastRaw))
}

// packet notes a packet's RTP time, arrived at now, and returns its
// position in ticks.
func (a *audioTimeline) packet(raw uint32, now time.Time) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	tick := a.unwrapLocked(raw)
	if !a.began {
		a.began = true
		a.buf = make([]float32, a.size)
		a.anchorTick, a.anchorUS = tick, now.UnixMicro()
		a.start, a.end = tick/ticksPerSample, tick/ticksPerSample
	}
	a.lastRaw, a.lastPos = raw, tick
	return tick
}

func (a *audioTimeline) slot(pos int64) int {
	n := int64(len(a.buf))
	return int(((pos % n) + n) % n)
}

// write puts samples at position pos (in samples), marking any gap before
// it as missing and forgetting what falls out of the ring.
func (a *audioTimeline) write(pos int64, samples []float32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.buf == nil {
		return // no packet noted: nowhere to put it
	}
	n := int64(len(a.buf))
	if to := pos + int64(len(samples)); to > a.end {
		if to-a.end >= n {
			for i := range a.buf {
				a.buf[i] = float32(math.NaN())
			}
		} else {
			for p := a.end; p < pos; p++ {
				a.buf[a.slot(p)] = float32(math.NaN())
			}
		}
		a.end = to
		a.start = max(a.start, a.end-n)
	}
	for i, v := range samples {
		if p := pos + int64(i); p >= a.start {
			a.buf[a.slot(p)] = v
		}
	}
	close(a.more)
	a.more = make(chan struct{})
}

// read copies the samples [from, from+n) into a new slice, with zeros
// for those missing, and counts them.
func (a *audioTimeline) read(from int64, n int) ([]float32, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]float32, n)
	missing := 0
	for i := range out {
		p := from + int64(i)
		if p < a.start || p >= a.end {
			missing++
			continue
		}
		if v := a.buf[a.slot(p)]; v == v { // not NaN
			out[i] = v
		} else {
			missing++
		}
	}
	return out, missing
}

// waitFor waits, while an audio track writes, until pos (in samples) has
// been written or audioWait passes.
func (a *audioTimeline) waitFor(pos int64) {
	deadline := time.After(audioWait)
	for {
		a.mu.Lock()
		done, more := a.end >= pos || a.active.Load() == 0, a.more
		a.mu.Unlock()
		if done {
			return
		}
		select {
		case <-more:
		case <-deadline:
			return
		}
	}
}

// span is the audio over [startUS, endUS) of ts.npy's clock, and how it
// was placed; ok is false when the peer never sent audio or the span is
// empty. It is at most the audio kept per peer long.
func (a *audioTimeline) span(s *avSync, startUS, endUS int64) (samples []float32, meta AudioMeta, ok bool) {
	a.mu.Lock()
	began := a.began
	a.mu.Unlock()
	if !began {
		return nil, AudioMeta{}, false
	}
	d := endUS - startUS // µs
	if d <= 0 {
		// Frame times that run backwards (a sender's RTP times) span nothing.
		return nil, AudioMeta{}, false
	}
	if keep := int64(a.size) * 1_000_000 / AudioRate; d > keep {
		// Nothing older than the ring holds can be read: the audio is the
		// span's last part, and starts later, by whole pairs of samples
		// (125 µs) so that StartUS stays a whole µs.
		const pair = 2 * 1_000_000 / AudioRate
		skip := (d - keep + pair - 1) / pair * pair
		startUS += skip
		d -= skip
	}
	n := int(d * AudioRate / 1_000_000)
	meta = AudioMeta{Rate: AudioRate, StartUS: startUS, Samples: n, Sync: "arrival"}
	var fromTick int64
	if raw, ok := s.audioRTP(startUS); ok {
		a.mu.Lock()
		fromTick = a.unwrapLocked(raw)
		a.mu.Unlock()
		meta.Sync = "rtcp"
	} else {
		a.mu.Lock()
		fromTick = a.anchorTick + (startUS-a.anchorUS)*audioRTPRate/1_000_000
		a.mu.Unlock()
	}
	from := fdiv(fromTick, ticksPerSample)
	a.waitFor(from + int64(n))
	samples, meta.Missing = a.read(from, n)
	return samples, meta, true
}

// fdiv is a/b rounded towards minus infinity.
func fdiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// AudioStats counts what happened to an audio track.
type AudioStats struct {
	Packets   int64 // packets decoded
	Late      int64 // packets older than what was decoded, dropped
	Concealed int64 // samples made up for lost packets
	Refused   int64 // packets libopus refused
	// CPU is the thread CPU time the packets took to decode and conceal
	// (measured only with a CPU budget: Config.CPUBudget).
	CPU time.Duration
}

// audioTrack decodes one audio track onto its peer's timeline.
type audioTrack struct {
	dec    *opus.Decoder
	tl     *audioTimeline
	budget *trackBudget // nil: none
	log    *slog.Logger
	out    []float32
	next   int64 // position, in ticks, after the last decoded packet
	began  bool

	packets, late, concealed, refused atomic.Int64
}

func newAudioTrack(tl *audioTimeline, budget *trackBudget, log *slog.Logger) (*audioTrack, error) {
	dec, err := opus.NewDecoder(AudioRate, 1)
	if err != nil {
		return nil, err
	}
	return &audioTrack{dec: dec, tl: tl, budget: budget, log: log, out: make([]float32, opus.MaxSamples(AudioRate))}, nil
}

// readRTP decodes src's packets until it ends (io.EOF), fails, ctx is
// done, or the track is over its CPU budget (errOverBudget).
func (t *audioTrack) readRTP(ctx context.Context, src RTPReader) error {
	t.tl.active.Add(1)
	defer t.tl.active.Add(-1)
	if d, ok := src.(interface{ SetReadDeadline(time.Time) error }); ok {
		stop := context.AfterFunc(ctx, func() { d.SetReadDeadline(time.Now()) })
		defer stop()
	}
	for {
		pkt, _, err := src.ReadRTP()
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("recorder: read audio RTP: %w", err)
		}
		if b := t.budget; b != nil {
			start := b.begin()
			t.packet(pkt.Timestamp, pkt.Payload, time.Now())
			if b.end(start, time.Now()) {
				return errOverBudget
			}
			continue
		}
		t.packet(pkt.Timestamp, pkt.Payload, time.Now())
	}
}

// packet decodes one packet with RTP time ts, arrived at now.
func (t *audioTrack) packet(ts uint32, payload []byte, now time.Time) {
	tick := t.tl.packet(ts, now)
	if t.began && tick < t.next {
		t.late.Add(1)
		return
	}
	if gap := tick - t.next; t.began && gap > 0 && gap <= int64(maxConceal)*audioRTPRate/int64(time.Second) {
		// libopus conceals in steps of 2.5 ms (40 samples at 16 kHz).
		n := int(gap/ticksPerSample) / 40 * 40
		if n > 0 {
			if got, err := t.dec.Decode(nil, t.out[:n]); err == nil {
				t.tl.write(t.next/ticksPerSample, t.out[:got])
				t.concealed.Add(int64(got))
			}
		}
	}
	n, err := t.dec.Decode(payload, t.out)
	if err != nil {
		t.refused.Add(1)
		t.log.Debug("audio packet not decoded", "err", err)
		return
	}
	t.tl.write(tick/ticksPerSample, t.out[:n])
	t.packets.Add(1)
	t.began = true
	t.next = tick + int64(n)*ticksPerSample
}

func (t *audioTrack) stats() AudioStats {
	return AudioStats{Packets: t.packets.Load(), Late: t.late.Load(), Concealed: t.concealed.Load(), Refused: t.refused.Load(),
		CPU: t.budget.cpu()}
}

func (t *audioTrack) close() { t.dec.Close() }
