//go:build cgo

package recorder

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/client/media/vpx"
)

// benchStream encodes n frames of 640x480 VP8 at 30 fps and kbps. noise
// adds sensor-like grain (±noise on luma), which is what makes a real
// webcam's stream expensive to decode.
func benchStream(b *testing.B, n, kbps, noise int) [][]byte {
	return encodeStream(b, vpx.VP8, 640, 480, 30, n, kbps, noise)
}

// encodeStream encodes n frames of w×h at fps and kbps in codec, with
// grain as benchStream's.
func encodeStream(b *testing.B, codec string, w, h, fps, n, kbps, noise int) [][]byte {
	b.Helper()
	enc, err := vpx.NewEncoder(vpx.EncoderConfig{Codec: codec, Width: w, Height: h, FPS: fps, BitrateKbps: kbps})
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	frames := make([][]byte, n)
	for i := range frames {
		pic := movingPicture(w, h, i)
		if noise > 0 {
			seed := uint32(i*7919 + 1)
			for j, v := range pic.Y {
				seed = seed*1664525 + 1013904223 // LCG: cheap, deterministic grain
				pic.Y[j] = uint8(min(max(int(v)+int(seed>>24)%(2*noise+1)-noise, 0), 255))
			}
		}
		f, _, err := enc.Encode(pic.vpx(), false)
		if err != nil || f == nil {
			b.Fatalf("encode %d: %v", i, err)
		}
		frames[i] = append([]byte(nil), f...)
	}
	// Making the pictures left a few hundred MB of garbage: collect it and
	// return it to the OS now, or the runtime's background scavenger does
	// that during the measured loops, on the same core.
	debug.FreeOSMemory()
	return frames
}

// BenchmarkPipelineVsDecode runs, in each iteration, the same 640x480 VP8
// stream through plain libvpx decoding and through the whole recorder
// pipeline with every frame kept (decode + sample + convert + resize to
// 224x224 + write tar shards with manifest, checksums, contact sheets and
// fsync), and reports both rates in process CPU time and their ratio.
// Run it on one core: GOMAXPROCS=1 taskset -c 1 go test -bench PipelineVsDecode.
func BenchmarkPipelineVsDecode(b *testing.B) {
	for _, c := range []struct {
		name        string
		kbps, noise int
		sum         Checksum
	}{
		{"pattern-1500kbps", 1500, 0, ChecksumCRC32},
		{"grainy-2500kbps", 2500, 6, ChecksumCRC32},
		{"pattern-1500kbps-sha256", 1500, 0, ChecksumSHA256}, // --checksum sha256
	} {
		b.Run(c.name, func(b *testing.B) { benchPipelineVsDecode(b, c.kbps, c.noise, c.sum) })
	}
}

func benchPipelineVsDecode(b *testing.B, kbps, noise int, sum Checksum) {
	const n = 300
	frames := benchStream(b, n, kbps, noise)
	var decCPU, pipeCPU time.Duration
	var decWall, pipeWall time.Duration
	for b.Loop() {
		// Plain decode: the floor.
		c0, w0 := processCPU(), time.Now()
		dec, err := vpx.NewDecoder(vpx.VP8)
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range frames {
			if img, err := dec.Decode(f); err != nil || img == nil {
				b.Fatalf("decode: %v", err)
			}
		}
		dec.Close()
		decCPU += processCPU() - c0
		decWall += time.Since(w0)

		// The pipeline.
		dir := b.TempDir()
		c0, w0 = processCPU(), time.Now()
		out, err := OpenOutput(OutputConfig{Dir: dir, Room: "bench", Checksum: sum, Size: Size{224, 224}, ClipFrames: 150})
		if err != nil {
			b.Fatal(err)
		}
		p, err := NewPipeline(out, TrackInfo{Peer: "p", Codec: vpx.VP8}, TrackOptions{FPS: 0, Fit: FitCrop})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for i, f := range frames {
			p.Frame(f, uint32(i*3000), start, false)
			// Let the writer run, as the pause between real frames does:
			// on one core it would otherwise wait for preemption while the
			// bounded queue drops frames.
			runtime.Gosched()
		}
		st, err := p.Close()
		if err != nil || st.Written != n {
			b.Fatalf("pipeline: %v, stats %+v", err, st)
		}
		out.Close()
		pipeCPU += processCPU() - c0
		pipeWall += time.Since(w0)
	}
	total := float64(b.N * n)
	decFPS, pipeFPS := total/decCPU.Seconds(), total/pipeCPU.Seconds()
	b.ReportMetric(decFPS, "decode-frames/s")
	b.ReportMetric(pipeFPS, "pipeline-frames/s")
	b.ReportMetric(100*pipeFPS/decFPS, "pipeline-%-of-decode")
	b.ReportMetric(total/decWall.Seconds(), "decode-wall-frames/s")
	b.ReportMetric(total/pipeWall.Seconds(), "pipeline-wall-frames/s")
}

// BenchmarkTrackCPU measures what an honest camera stream costs against
// the CPU budget (Config.CPUBudget): the pipeline at the recorder's
// defaults (5 fps kept, 224x224) meters each frame's thread CPU time as
// the budget does, and reports it as a share of one core at the stream's
// frame rate. The streams have a webcam's grain at the bitrates browsers
// send 720p and 1080p at. Run it on one core:
// GOMAXPROCS=1 taskset -c 1 go test -run '^$' -bench TrackCPU -benchtime 3x.
func BenchmarkTrackCPU(b *testing.B) {
	for _, c := range []struct {
		codec           string
		w, h, fps, kbps int
	}{
		{vpx.VP8, 1280, 720, 30, 2500},
		{vpx.VP8, 1920, 1080, 30, 4500},
		{vpx.VP8, 1920, 1080, 60, 6000},
		{vpx.VP9, 1280, 720, 30, 2500},
		{vpx.VP9, 1920, 1080, 30, 4500},
		{vpx.VP9, 1920, 1080, 60, 6000},
	} {
		b.Run(fmt.Sprintf("%s-%dp%d", strings.TrimPrefix(c.codec, "video/"), c.h, c.fps), func(b *testing.B) {
			n := 3 * c.fps // 3 s
			frames := encodeStream(b, c.codec, c.w, c.h, c.fps, n, c.kbps, 6)
			var cpu time.Duration
			for b.Loop() {
				out, err := OpenOutput(OutputConfig{Dir: b.TempDir(), Room: "bench", Size: DefaultSize, ClipFrames: DefaultClipFrames, NoSync: true})
				if err != nil {
					b.Fatal(err)
				}
				opts := TrackOptions{FPS: DefaultFPS, Fit: FitCrop, budget: &trackBudget{track: newCPUMeter(0, DefaultBudgetWindow, time.Now())}}
				p, err := NewPipeline(out, TrackInfo{Peer: "p", Codec: c.codec}, opts)
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				for i, f := range frames {
					p.Frame(f, uint32(i*90000/c.fps), start, false)
				}
				st, err := p.Close()
				if err != nil || st.Decoded != int64(n) {
					b.Fatalf("pipeline: %v, stats %+v", err, st)
				}
				out.Close()
				cpu += st.CPU
			}
			perFrame := cpu / time.Duration(b.N*n)
			b.ReportMetric(float64(perFrame.Microseconds())/1000, "cpu-ms/frame")
			b.ReportMetric(100*float64(c.fps)*perFrame.Seconds(), "core-%")
		})
	}
}
