//go:build cgo

package recorder

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/khadga/khadga/client/media/vpx"
)

// movingPicture is source picture i: a pattern that moves a lot from frame
// to frame, so a frame decoded against the wrong reference shows.
func movingPicture(w, h, i int) *I420 {
	rgb := make([]byte, w*h*3)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			p := rgb[(y*w+x)*3:]
			xx, yy := x+5*i, y+3*i
			p[0] = uint8(xx * 2)
			p[1] = uint8(yy * 2)
			if (xx/24+yy/24)%2 == 0 {
				p[2] = 220
			} else {
				p[2] = 30
			}
		}
	}
	return RGBToI420(rgb, w, h)
}

// vpx is the picture as the encoder takes it.
func (m *I420) vpx() *vpx.Image {
	return &vpx.Image{Width: m.Width, Height: m.Height, Y: m.Y, U: m.U, V: m.V,
		YStride: m.YStride, UStride: m.UStride, VStride: m.VStride}
}

// genSource encodes pictures on demand and packetizes them like a WebRTC
// sender, dropping packets at random; a PLI makes the next frame a key
// frame, as a real sender's encoder does.
type genSource struct {
	t       *testing.T
	enc     *vpx.Encoder
	pk      rtp.Packetizer
	w, h    int
	frames  int
	next    int
	queue   []*rtp.Packet
	loss    float64
	rng     *rand.Rand
	wantKey bool
	lost    int
	// tsStep, if set, is the RTP time from frame i to the next (default
	// 3000 ticks, 1/30 s).
	tsStep func(i int) uint32
}

func newGenSource(t *testing.T, codec string, w, h, frames int, loss float64) *genSource {
	enc, err := vpx.NewEncoder(vpx.EncoderConfig{Codec: codec, Width: w, Height: h, FPS: 30, BitrateKbps: 1500})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { enc.Close() })
	var pay rtp.Payloader = &codecs.VP8Payloader{EnablePictureID: true}
	if codec == vpx.VP9 {
		pay = &codecs.VP9Payloader{}
	}
	return &genSource{t: t, enc: enc, w: w, h: h, frames: frames, loss: loss, rng: rand.New(rand.NewPCG(1, 2)),
		pk: rtp.NewPacketizer(1200, 96, 1234, pay, rtp.NewRandomSequencer(), 90000)}
}

func (g *genSource) ReadRTP() (*rtp.Packet, interceptor.Attributes, error) {
	for len(g.queue) == 0 {
		if g.next == g.frames {
			return nil, nil, io.EOF
		}
		pic := movingPicture(g.w, g.h, g.next)
		frame, _, err := g.enc.Encode(pic.vpx(), g.wantKey)
		if err != nil {
			return nil, nil, err
		}
		g.wantKey = false
		// Every frame advances the RTP clock by 1/30 s (3000 ticks at 90 kHz).
		step := uint32(3000)
		if g.tsStep != nil {
			step = g.tsStep(g.next)
		}
		for _, p := range g.pk.Packetize(frame, step) {
			if g.next > 0 && g.rng.Float64() < g.loss {
				g.lost++
				continue
			}
			g.queue = append(g.queue, p)
		}
		g.next++
	}
	p := g.queue[0]
	g.queue = g.queue[1:]
	return p, nil, nil
}

// loadedClip is one clip read back from a tar shard.
type loadedClip struct {
	meta   ClipMeta
	frames [][]byte
	ts     []int64
}

// loadShards reads every tar shard in dir, in order.
func loadShards(t *testing.T, dir string, frame Size) []loadedClip {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, "*.tar"))
	sort.Strings(paths)
	var out []loadedClip
	for _, p := range paths {
		_, files := readTar(t, p)
		var c loadedClip
		for name, b := range files {
			switch {
			case strings.HasSuffix(name, ".json"):
				if err := json.Unmarshal(b, &c.meta); err != nil {
					t.Fatal(err)
				}
			case strings.HasSuffix(name, ".frames.npy"):
				data := b[npyHeaderLen:]
				n := frame.W * frame.H * 3
				for len(data) >= n {
					c.frames, data = append(c.frames, data[:n]), data[n:]
				}
			case strings.HasSuffix(name, ".ts.npy"):
				for data := b[npyHeaderLen:]; len(data) >= 8; data = data[8:] {
					c.ts = append(c.ts, int64(binary.LittleEndian.Uint64(data)))
				}
			}
		}
		if len(c.frames) != len(c.ts) || len(c.frames) != c.meta.Frames {
			t.Fatalf("%s: %d frames, %d times, metadata says %d", p, len(c.frames), len(c.ts), c.meta.Frames)
		}
		out = append(out, c)
	}
	return out
}

func recordGenerated(t *testing.T, codec string, frames int, loss, fps float64, clipFrames int) (TrackStats, *genSource, []loadedClip, OutputConfig) {
	t.Helper()
	cfg := OutputConfig{Dir: t.TempDir(), Room: "lab", Size: Size{W: 96, H: 96}, ClipFrames: clipFrames, NoSync: true, Logger: testLogger(t)}
	out, err := OpenOutput(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	src := newGenSource(t, codec, 160, 120, frames, loss)
	goroutines := runtime.NumGoroutine()
	st := runPipeline(t, out, TrackInfo{Peer: "p1", User: "alice", Track: "cam", Codec: codec, Consent: time.Now()},
		TrackOptions{FPS: fps, Fit: FitCrop, QueueFrames: 1000, Logger: testLogger(t),
			RequestKeyframe: func() error { src.wantKey = true; return nil }}, src)
	// Close waits for the writer: nothing the pipeline started is left. A
	// timer callback (the PLI repeat) may still be finishing, so the count
	// gets a moment to settle.
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > goroutines; {
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines after Close, %d before NewPipeline", runtime.NumGoroutine(), goroutines)
			break
		}
		time.Sleep(10 * time.Millisecond) // polling a count, not synchronising
	}
	return st, src, loadShards(t, cfg.Dir, cfg.Size), cfg
}

// runPipeline records src into out with a new pipeline until src ends,
// and closes it.
func runPipeline(t *testing.T, out *Output, info TrackInfo, opts TrackOptions, src RTPReader) TrackStats {
	t.Helper()
	p, err := NewPipeline(out, info, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ReadRTP(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	st, err := p.Close()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// checkFrames compares every written frame with its source picture, found
// from its capture time (frame i is captured at i/30 s), resized the same way.
func checkFrames(t *testing.T, clips []loadedClip, cfg OutputConfig, srcW, srcH int) (n int) {
	t.Helper()
	sc, _ := NewScaler(Size{srcW, srcH}, cfg.Size, FitCrop)
	want := make([]byte, sc.FrameBytes())
	t0 := clips[0].ts[0]
	for _, c := range clips {
		for i, f := range c.frames {
			idx := int((c.ts[i] - t0 + 16_666) / 33_333)
			if err := sc.Convert(want, movingPicture(srcW, srcH, idx)); err != nil {
				t.Fatal(err)
			}
			if p := psnr(f, want); p < 30 {
				t.Errorf("clip %d frame %d (source %d): PSNR %.1f dB, want >= 30", c.meta.Clip, i, idx, p)
			}
			n++
		}
	}
	return n
}

func TestPipelineSamplesAndMatchesSource(t *testing.T) {
	for _, codec := range []string{vpx.VP8, vpx.VP9} {
		t.Run(codec, func(t *testing.T) {
			st, _, clips, cfg := recordGenerated(t, codec, 90, 0, 10, 20)
			// 90 frames at 30 fps are 3 s: 30 frames at 10 fps, in clips of 20.
			if len(clips) != 2 || clips[0].meta.Frames != 20 || clips[1].meta.Frames != 10 {
				t.Fatalf("clips %d; stats %+v", len(clips), st)
			}
			var all []int64
			for _, c := range clips {
				all = append(all, c.ts...)
				if c.meta.Codec != codec || c.meta.SourceSizes[0] != (SizeRun{0, 160, 120}) || c.meta.User != "alice" {
					t.Errorf("metadata %+v", c.meta)
				}
			}
			for i := 1; i < len(all); i++ {
				if d := all[i] - all[i-1]; d < 90_000 || d > 110_000 {
					t.Errorf("frames %d and %d are %d µs apart, want 100 ms", i-1, i, d)
				}
			}
			if n := checkFrames(t, clips, cfg, 160, 120); n != 30 || st.Dropped != (Drops{}) || st.PLIs != 0 {
				t.Errorf("%d frames checked, stats %+v", n, st)
			}
		})
	}
}

func TestPipelineLossRequestsKeyFrames(t *testing.T) {
	st, src, clips, cfg := recordGenerated(t, vpx.VP8, 150, 0.05, 0, 150)
	t.Logf("lost %d packets; stats %+v", src.lost, st)
	if src.lost == 0 {
		t.Fatal("the source lost no packets")
	}
	if st.Gaps == 0 || st.PLIs == 0 || st.Dropped.Gap == 0 {
		t.Errorf("losses not handled: %+v", st)
	}
	n := checkFrames(t, clips, cfg, 160, 120) // every written frame undamaged
	if n < 30 || int64(n) != st.Written {
		t.Errorf("%d frames written, stats say %d", n, st.Written)
	}
	var d Drops
	for _, c := range clips {
		d.Gap += c.meta.Dropped.Gap
	}
	if d.Gap == 0 {
		t.Error("clip metadata reports no drops")
	}
}

func TestPipelineWriteErrorKeepsMemoryBounded(t *testing.T) {
	cfg := OutputConfig{Dir: t.TempDir(), Room: "lab", Size: Size{W: 32, H: 32}, ClipFrames: 100, NoSync: true}
	out, err := OpenOutput(cfg)
	if err != nil {
		t.Fatal(err)
	}
	src := newGenSource(t, vpx.VP8, 64, 48, 40, 0)
	p, err := NewPipeline(out, TrackInfo{Peer: "p", Codec: vpx.VP8}, TrackOptions{QueueFrames: 4})
	if err != nil {
		t.Fatal(err)
	}
	// Close the output under the writer: it cannot start a clip, reports
	// that, and discards frames instead of keeping them.
	out.Close()
	os.RemoveAll(cfg.Dir)
	if err := p.ReadRTP(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	st, err := p.Close()
	if err == nil {
		t.Error("writing into a removed directory reported no error")
	}
	if st.Kept != 40 || st.Written != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestNoDecoderForOtherCodecs(t *testing.T) {
	out, err := OpenOutput(testOutputConfig(t, FormatTar))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := NewPipeline(out, TrackInfo{Codec: "video/H264"}, TrackOptions{}); err == nil || !strings.Contains(err.Error(), "H264") {
		t.Errorf("H.264 pipeline: %v", err)
	}
}

// TestPipelineHostileRTPTimes: a peer's video whose RTP times run
// backwards or jump by half the 32-bit range, with audio from the same
// peer, is recorded into clips numpy reads, with capture times near the
// frames' arrival. RTP times that ran backwards made the clip's audio
// span negative, and the recorder panicked (makeslice) in the writer.
func TestPipelineHostileRTPTimes(t *testing.T) {
	cases := []struct {
		name  string
		step  func(i int) uint32
		audio bool
	}{
		{"backwards with audio", func(int) uint32 { return math.MaxUint32 - 90000 + 1 }, true},
		// Without audio: before the clock was bounded, a clip's span of
		// years would have had the audio allocate that long.
		{"half the range forward", func(int) uint32 { return 1<<31 - 1 }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := OutputConfig{Dir: t.TempDir(), Room: "lab", Size: Size{W: 32, H: 32}, ClipFrames: 10, NoSync: true, Logger: testLogger(t)}
			out, err := OpenOutput(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			src := newGenSource(t, vpx.VP8, 64, 48, 30, 0)
			src.tsStep = c.step
			opts := TrackOptions{FPS: 5, Logger: testLogger(t), av: newAVSync()}
			if c.audio {
				opts.audio = newAudioTimeline(30 * time.Second)
				opts.audio.write(opts.audio.packet(1000, time.Now())/ticksPerSample, make([]float32, 320))
			}
			begin := time.Now()
			st := runPipeline(t, out, TrackInfo{Peer: "mallory", Codec: vpx.VP8}, opts, src)
			end := time.Now()
			clips := loadShards(t, cfg.Dir, cfg.Size)
			// Frames that all come at once and whose times restart from
			// arrival are at about one time: the sampler keeps few.
			if len(clips) == 0 || st.Written == 0 || st.Decoded != 30 {
				t.Fatalf("%d clips; stats %+v", len(clips), st)
			}
			for _, cl := range clips {
				for _, ts := range cl.ts {
					if ts < begin.Add(-MaxClockSkew).UnixMicro() || ts > end.Add(MaxClockSkew).UnixMicro() {
						t.Fatalf("clip %d: capture time %v, recorded between %v and %v", cl.meta.Clip, time.UnixMicro(ts).UTC(), begin.UTC(), end.UTC())
					}
				}
				if a := cl.meta.Audio; a != nil && (a.Samples < 0 || a.Samples > 30*AudioRate) {
					t.Errorf("clip %d: audio of %d samples", cl.meta.Clip, a.Samples)
				}
			}
			checkNumpyMatchesGo(t, cfg.Dir, clips)
		})
	}
}
