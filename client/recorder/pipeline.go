package recorder

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/khadga/khadga/client/media/vpx"
)

// ErrNoDecoder: this build cannot decode the codec (no libvpx without cgo,
// or a codec other than VP8 and VP9).
var ErrNoDecoder = errors.New("recorder: no decoder for codec")

// Codecs lists the video codecs this build can decode, as MIME types.
// Without cgo the list is empty.
func Codecs() []string { return vpx.Codecs() }

// TrackInfo says whose track a pipeline records.
type TrackInfo struct {
	Peer  string
	User  string
	Track string
	// Codec is the MIME type, video/VP8 or video/VP9.
	Codec string
	// Consent is when the peer's consent to being recorded reached the
	// recorder (client.RecordingConsent).
	Consent time.Time
}

// TrackOptions tune a pipeline.
type TrackOptions struct {
	// FPS is the sampling rate; 0 keeps every decoded frame.
	FPS float64
	Fit Fit
	// QueueFrames bounds the frames waiting to be written (default 64).
	QueueFrames int
	// RequestKeyframe asks the sender for a key frame (an RTCP PLI).
	RequestKeyframe func() error
	// Logger takes the pipeline's messages as it is: give it the track's
	// attributes. nil: the Output's logger with the track's peer and id.
	Logger *slog.Logger
	// The peer's audio, which each clip takes its span of (audio.go).
	av    *avSync
	audio *audioTimeline
	// budget meters the track's CPU time (budget.go); ReadRTP stops
	// when it is over.
	budget *trackBudget
}

// TrackStats counts what happened to a track.
type TrackStats struct {
	Frames  int64 // complete frames received
	Decoded int64 // frames decoded
	Kept    int64 // frames kept by the sampler
	Written int64 // frames written to clips
	// Unwritten counts kept frames that were not written: a write
	// failed (a full disk), losing its clip, and frames until the writer
	// tried again.
	Unwritten int64
	Clips     int64 // clips finished
	PLIs      int64 // key frame requests sent
	Gaps      int64 // losses detected (sequence, picture id or builder drops)
	Dropped   Drops
	// CPU is the thread CPU time the track's frames took to decode,
	// sample and convert, over every stretch of consent so far (measured
	// only with a CPU budget: Config.CPUBudget).
	CPU time.Duration
}

// PLI pacing: after a loss a PLI goes out at once, and again every
// pliRepeat while no key frame has come.
const pliRepeat = 500 * time.Millisecond

// Pipeline records one track: Frame decodes, samples and converts frames on
// the caller's goroutine, and a writer goroutine writes them to clips.
type Pipeline struct {
	info TrackInfo
	opts TrackOptions
	out  *Output
	log  *slog.Logger
	dec  *vpx.Decoder
	q    *Queue

	// Decode side, owned by the goroutine calling Frame.
	clock    *Clock
	sampler  *Sampler
	scaler   *Scaler
	waitKey  bool
	skewed   bool // the clock restarted (logged once)
	lastPLI  time.Time
	frames   atomic.Int64
	decoded  atomic.Int64
	kept     atomic.Int64
	gapDrops atomic.Int64
	decDrops atomic.Int64
	plis     atomic.Int64
	gaps     atomic.Int64

	// Write side.
	written   atomic.Int64
	unwritten atomic.Int64
	clips     atomic.Int64
	wdone     chan struct{}
	werr      error
	close     sync.Once
}

// NewPipeline starts recording a track into out.
func NewPipeline(out *Output, info TrackInfo, opts TrackOptions) (*Pipeline, error) {
	dec, err := vpx.NewDecoder(info.Codec)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrNoDecoder, info.Codec, err)
	}
	if opts.QueueFrames <= 0 {
		opts.QueueFrames = 64
	}
	if opts.Logger == nil {
		opts.Logger = out.log.With(slog.String("peer", info.Peer), slog.String("track", info.Track))
	}
	p := &Pipeline{
		info: info, opts: opts, out: out, dec: dec,
		log:     opts.Logger,
		q:       NewQueue(opts.QueueFrames),
		clock:   NewClock(90000),
		sampler: NewSampler(opts.FPS),
		waitKey: true, // a decoder starts at a key frame
		wdone:   make(chan struct{}),
	}
	go p.writeLoop()
	return p, nil
}

// Frame handles one complete encoded frame with its RTP timestamp (90 kHz),
// its arrival time, and whether packets were lost before it. It never
// blocks on the disk.
func (p *Pipeline) Frame(data []byte, rtpTS uint32, arrival time.Time, lost bool) {
	if b := p.opts.budget; b != nil {
		start := b.begin()
		defer func() { b.end(start, time.Now()) }()
	}
	p.frames.Add(1)
	ts := p.clock.Time(rtpTS, arrival)
	if !p.skewed && p.clock.Resets() > 0 {
		p.skewed = true
		p.log.Warn("the sender's RTP times stray from the frames' arrival; capture times start again from arrival",
			slog.Duration("max_skew", MaxClockSkew))
	}
	if p.opts.av != nil {
		p.opts.av.videoFrame(rtpTS, ts)
	}
	if lost {
		p.gaps.Add(1)
		p.waitKey = true
		p.lastPLI = time.Time{} // request at once
	}
	if p.waitKey {
		if !vpx.IsKeyFrame(p.info.Codec, data) {
			// libvpx would decode this without complaint into a damaged
			// picture: skip until the key frame the PLI asks for.
			p.gapDrops.Add(1)
			p.requestKey(arrival)
			return
		}
		p.waitKey = false
	}
	img, err := p.dec.Decode(data)
	if err != nil {
		p.decDrops.Add(1)
		p.waitKey = true
		p.lastPLI = time.Time{}
		p.requestKey(arrival)
		p.log.Debug("frame not decoded", "err", err)
		return
	}
	if img == nil {
		return
	}
	p.decoded.Add(1)
	if !p.sampler.Keep(ts) {
		return
	}
	src := Size{img.Width, img.Height}
	if p.scaler == nil || p.scaler.Src() != src {
		s, err := NewScaler(src, p.out.cfg.Size, p.opts.Fit)
		if err != nil {
			p.decDrops.Add(1)
			return
		}
		p.scaler = s
	}
	buf := p.q.Buffer(p.scaler.FrameBytes())
	pic := I420{Width: img.Width, Height: img.Height, Y: img.Y, U: img.U, V: img.V,
		YStride: img.YStride, UStride: img.UStride, VStride: img.VStride}
	if err := p.scaler.Convert(buf, &pic); err != nil {
		p.q.Recycle(buf)
		p.decDrops.Add(1)
		return
	}
	p.kept.Add(1)
	p.q.Push(Frame{RGB: buf, TS: ts, Src: src})
}

func (p *Pipeline) requestKey(now time.Time) {
	if p.opts.RequestKeyframe == nil || now.Sub(p.lastPLI) < pliRepeat {
		return
	}
	p.lastPLI = now
	if err := p.opts.RequestKeyframe(); err != nil {
		p.log.Debug("key frame request failed", "err", err)
		return
	}
	p.plis.Add(1)
}

func (p *Pipeline) drops() Drops {
	return Drops{Queue: p.q.Dropped(), Gap: p.gapDrops.Load(), Decode: p.decDrops.Load()}
}

// writeRetry is how long a track's writer waits after a write failed (a
// full disk) before it starts a clip again. Frames meanwhile are dropped
// and counted (TrackStats.Unwritten).
var writeRetry = 5 * time.Second

// writeLoop writes queued frames to clips of ClipFrames until the queue is
// closed and drained, then finishes the last clip. A write that fails
// loses the clip it was part of; the writer tries again with a new clip
// after writeRetry, logging once that writing failed and once that it
// works again.
func (p *Pipeline) writeLoop() {
	defer close(p.wdone)
	var (
		clip    *Clip
		start   Drops
		failing bool
		retryAt time.Time
	)
	// fail notes a failed write that lost a clip of n frames written
	// and the frame in hand, if any (extra).
	fail := func(err error, n, extra int, msg string) {
		if p.werr == nil {
			p.werr = err
		}
		p.written.Add(-int64(n))
		p.unwritten.Add(int64(n + extra))
		retryAt = time.Now().Add(writeRetry)
		if !failing {
			failing = true
			p.log.Error(msg+"; dropping frames, trying again", "err", err, slog.Duration("every", writeRetry))
		}
	}
	finish := func() {
		if clip == nil {
			return
		}
		p.addAudio(clip)
		n := clip.Len()
		sh, err := clip.Finish(p.drops().Sub(start))
		clip = nil
		if err != nil {
			fail(err, n, 0, "clip not written")
			return
		}
		p.clips.Add(1)
		p.log.Info("clip written", slog.String("shard", sh.File), slog.Int("frames", sh.Frames))
	}
	for range p.q.Ready() {
		for {
			f, ok, done := p.q.Pop()
			if done {
				finish()
				return
			}
			if !ok {
				break
			}
			if clip == nil && !time.Now().Before(retryAt) {
				var err error
				start = p.drops()
				clip, err = p.out.StartClip(ClipMeta{
					Peer: p.info.Peer, User: p.info.User, Track: p.info.Track, Codec: p.info.Codec,
					FPS: p.opts.FPS, Fit: p.opts.Fit.String(), ConsentTime: p.info.Consent.UTC(),
				})
				if err != nil {
					fail(err, 0, 0, "cannot start a clip")
				}
			}
			if clip == nil {
				p.unwritten.Add(1)
			} else if err := clip.Add(f.RGB, f.TS, f.Src); err != nil {
				fail(err, clip.Len(), 1, "clip not written")
				clip.Abort()
				clip = nil
			} else {
				p.written.Add(1)
				if failing {
					failing = false
					p.log.Info("writing again", slog.Int64("unwritten", p.unwritten.Load()))
				}
			}
			p.q.Recycle(f.RGB)
			if clip != nil && clip.Full() {
				finish()
			}
		}
	}
}

// addAudio gives clip the peer's audio over its frames' span: from the
// first frame to one frame interval past the last.
func (p *Pipeline) addAudio(clip *Clip) {
	if p.opts.audio == nil || clip.Len() == 0 {
		return
	}
	m := clip.Meta()
	step := int64(1_000_000 / 30)
	switch {
	case p.opts.FPS > 0:
		step = int64(1_000_000 / p.opts.FPS)
	case clip.Len() > 1:
		step = (m.EndUS - m.StartUS) / int64(clip.Len()-1)
	}
	if samples, meta, ok := p.opts.audio.span(p.opts.av, m.StartUS, m.EndUS+step); ok {
		clip.SetAudio(samples, meta)
	}
}

// Close stops taking frames, writes what is queued, finishes the current
// clip and frees the decoder. Call it after the last Frame.
func (p *Pipeline) Close() (TrackStats, error) {
	p.close.Do(func() {
		p.q.Close()
		<-p.wdone
		p.dec.Close()
	})
	return p.Stats(), p.werr
}

// Stats reports the counters so far.
func (p *Pipeline) Stats() TrackStats {
	return TrackStats{
		Frames: p.frames.Load(), Decoded: p.decoded.Load(), Kept: p.kept.Load(),
		Written: p.written.Load(), Unwritten: p.unwritten.Load(), Clips: p.clips.Load(), PLIs: p.plis.Load(), Gaps: p.gaps.Load(),
		Dropped: p.drops(), CPU: p.opts.budget.cpu(),
	}
}
