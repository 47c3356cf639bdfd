//go:build cgo

package media

import (
	"context"
	"errors"
	"image"
	"io"
	"testing"
	"time"
)

func TestPatternEncodeDecodeKeepsCounter(t *testing.T) {
	p, err := NewTestPattern(PatternConfig{Frames: 40, KeyframeInterval: 15})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	d, err := NewDecoder("video/VP8")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	for i := 0; ; i++ {
		s, err := p.NextSample(ctx)
		if errors.Is(err, io.EOF) {
			if i != 40 {
				t.Fatalf("EOF after %d frames, want 40", i)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Data) == 0 || s.Duration <= 0 {
			t.Fatalf("frame %d: %d bytes, duration %v", i, len(s.Data), s.Duration)
		}
		img, err := d.Decode(s.Data)
		if err != nil || img == nil {
			t.Fatalf("frame %d: decode: %v", i, err)
		}
		if img.Bounds().Dx() != 320 || img.Bounds().Dy() != 240 {
			t.Fatalf("decoded size %v", img.Bounds())
		}
		if n, ok := ReadCounter(img); !ok || n != i {
			t.Fatalf("frame %d: counter %d, ok %v", i, n, ok)
		}
	}
}

func TestDecoderRejectsGarbage(t *testing.T) {
	d, err := NewDecoder("VP8")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, b := range [][]byte{nil, {0}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}} {
		if img, err := d.Decode(b); err == nil && img != nil {
			t.Fatalf("garbage %x decoded to a picture", b)
		}
	}
	if _, err := NewDecoder("H264"); err == nil {
		t.Fatal("H264 decoder should be refused")
	}
}

func TestCounterRoundTripUncompressed(t *testing.T) {
	img := image.NewYCbCr(image.Rect(0, 0, 256, 64), image.YCbCrSubsampleRatio420)
	for _, n := range []int{0, 1, 89, 12345, CounterMax} {
		DrawTestPattern(img, n)
		if got, ok := ReadCounter(img); !ok || got != n {
			t.Fatalf("counter %d read as %d (ok %v)", n, got, ok)
		}
	}
	// A picture that is not the pattern has no counter.
	flat := image.NewYCbCr(image.Rect(0, 0, 256, 64), image.YCbCrSubsampleRatio420)
	if _, ok := ReadCounter(flat); ok {
		t.Fatal("flat picture read as a counter")
	}
}

// TestPatternStarted: Started is zero until frame 0 is made, then the time
// it was made, and later frames leave it alone: the start time a tone
// beeping in step with the frames counts from. Frame n is stamped Started
// + n/FPS.
func TestPatternStarted(t *testing.T) {
	p, err := NewTestPattern(PatternConfig{Frames: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if !p.Started().IsZero() {
		t.Fatalf("started at %v before any frame", p.Started())
	}
	before := time.Now()
	s0, err := p.NextSample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	start := p.Started()
	if start.Before(before) || start.After(after) {
		t.Fatalf("started at %v, want between %v and %v", start, before, after)
	}
	s1, err := p.NextSample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !p.Started().Equal(start) {
		t.Fatalf("frame 1 moved the start from %v to %v", start, p.Started())
	}
	if !s0.Timestamp.Equal(start) || !s1.Timestamp.Equal(start.Add(time.Second/30)) {
		t.Fatalf("frames stamped %v and %v, want the start %v and 1/30 s after", s0.Timestamp, s1.Timestamp, start)
	}
}
