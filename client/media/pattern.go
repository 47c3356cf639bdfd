package media

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"sync/atomic"
	"time"

	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/khadga/khadga/client/media/vpx"
)

// The frame counter is drawn as two rows of counterBits square blocks at
// the top left: the first row holds the counter's bits (most significant
// first, white for 1), the second their complement, so a reader can tell a
// damaged strip from a counter. Blocks are large and flat so that they
// survive lossy compression.
const (
	counterBits  = 16
	counterBlock = 16
	// CounterMax is the largest counter value; it wraps after.
	CounterMax = 1<<counterBits - 1
)

// minPatternWidth fits the counter strip.
const minPatternWidth = counterBits * counterBlock

// DrawTestPattern paints frame n of the test pattern into img (4:2:0): a
// diagonal colour gradient that scrolls one step a frame, a white square
// that bounces across the picture, and frame n's counter strip.
func DrawTestPattern(img *image.YCbCr, n int) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	for y := 0; y < h; y++ {
		row := img.Y[y*img.YStride:]
		for x := 0; x < w; x++ {
			row[x] = byte(16 + (x+y+4*n)%200)
		}
	}
	for y := 0; y < (h+1)/2; y++ {
		cb := img.Cb[y*img.CStride:]
		cr := img.Cr[y*img.CStride:]
		for x := 0; x < (w+1)/2; x++ {
			cb[x] = byte(64 + (x+2*n)%128)
			cr[x] = byte(64 + (y+n)%128)
		}
	}
	// A bouncing square below the counter strip.
	size := max(h/6, 8)
	span := max(w-size, 1)
	pos := n * 4 % (2 * span)
	if pos > span {
		pos = 2*span - pos
	}
	top := min(2*counterBlock+8, max(h-size, 0))
	fillLuma(img, pos, top, size, size, 235)
	drawCounter(img, n&CounterMax)
}

func fillLuma(img *image.YCbCr, x0, y0, w, h int, v byte) {
	b := img.Bounds()
	for y := y0; y < min(y0+h, b.Dy()); y++ {
		row := img.Y[y*img.YStride:]
		for x := x0; x < min(x0+w, b.Dx()); x++ {
			row[x] = v
		}
	}
	// Neutral chroma, so the blocks read the same in any colour space.
	for y := y0 / 2; y < min((y0+h+1)/2, (b.Dy()+1)/2); y++ {
		for x := x0 / 2; x < min((x0+w+1)/2, (b.Dx()+1)/2); x++ {
			img.Cb[y*img.CStride+x] = 128
			img.Cr[y*img.CStride+x] = 128
		}
	}
}

func drawCounter(img *image.YCbCr, n int) {
	for i := 0; i < counterBits; i++ {
		bit := n>>(counterBits-1-i)&1 == 1
		v, inv := byte(16), byte(235)
		if bit {
			v, inv = inv, v
		}
		fillLuma(img, i*counterBlock, 0, counterBlock, counterBlock, v)
		fillLuma(img, i*counterBlock, counterBlock, counterBlock, counterBlock, inv)
	}
}

// ReadCounter reads the frame counter from a test-pattern picture. ok is
// false when the strip is not readable (not a test pattern, or too damaged).
func ReadCounter(img *image.YCbCr) (n int, ok bool) {
	b := img.Bounds()
	if b.Dx() < minPatternWidth || b.Dy() < 2*counterBlock {
		return 0, false
	}
	for i := 0; i < counterBits; i++ {
		top := blockBit(img, i*counterBlock, 0)
		bottom := blockBit(img, i*counterBlock, counterBlock)
		if top == bottom {
			return 0, false
		}
		if top {
			n |= 1 << (counterBits - 1 - i)
		}
	}
	return n, true
}

// blockBit averages the centre of a block and thresholds it.
func blockBit(img *image.YCbCr, x0, y0 int) bool {
	sum, cnt := 0, 0
	for y := y0 + 4; y < y0+counterBlock-4; y++ {
		for x := x0 + 4; x < x0+counterBlock-4; x++ {
			sum += int(img.Y[(y+img.Rect.Min.Y)*img.YStride+x+img.Rect.Min.X])
			cnt++
		}
	}
	return sum/cnt > 128
}

// PatternConfig configures a test-pattern source.
type PatternConfig struct {
	// Width and Height default to 320x240; Width is at least 256 for the
	// counter strip.
	Width, Height int
	// FPS defaults to 30.
	FPS int
	// Frames is how many frames to produce before io.EOF; 0 means no end.
	Frames int
	// BitrateKbps is the encoder's target (default 800).
	BitrateKbps int
	// KeyframeInterval is the largest distance between key frames (default
	// 2 seconds' worth).
	KeyframeInterval int
}

// patternSpeed is libvpx's cpu-used for the pattern: fast enough for a
// peer that also decodes, better looking than the real-time maximum.
const patternSpeed = 8

// TestPattern is a VP8 video source (it satisfies client.VideoSource): the
// moving pattern of DrawTestPattern, encoded with libvpx, frame n carrying
// counter n from 0.
type TestPattern struct {
	cfg   PatternConfig
	enc   *vpx.Encoder
	img   *image.YCbCr
	n     int
	keyRq atomic.Bool
	first atomic.Int64 // Unix ns when frame 0 was made, 0 before
}

// NewTestPattern makes a test-pattern source. Without cgo it returns
// vpx.ErrNoLibvpx.
func NewTestPattern(cfg PatternConfig) (*TestPattern, error) {
	if cfg.Width == 0 && cfg.Height == 0 {
		cfg.Width, cfg.Height = 320, 240
	}
	if cfg.FPS <= 0 {
		cfg.FPS = 30
	}
	if cfg.Width < minPatternWidth || cfg.Height < 4*counterBlock {
		return nil, fmt.Errorf("media: test pattern needs at least %dx%d pixels", minPatternWidth, 4*counterBlock)
	}
	if cfg.Frames < 0 {
		return nil, errors.New("media: Frames must not be negative")
	}
	if cfg.KeyframeInterval <= 0 {
		cfg.KeyframeInterval = 2 * cfg.FPS
	}
	enc, err := vpx.NewEncoder(vpx.EncoderConfig{Codec: vpx.VP8, Width: cfg.Width, Height: cfg.Height, FPS: cfg.FPS,
		BitrateKbps: cfg.BitrateKbps, KeyframeInterval: cfg.KeyframeInterval, Speed: patternSpeed})
	if err != nil {
		return nil, err
	}
	return &TestPattern{cfg: cfg, enc: enc, img: image.NewYCbCr(image.Rect(0, 0, cfg.Width, cfg.Height), image.YCbCrSubsampleRatio420)}, nil
}

// MimeType is VP8.
func (p *TestPattern) MimeType() string { return MimeTypeVP8 }

// NextSample encodes the next frame, stamped with its capture time. The
// first frame is a key frame.
func (p *TestPattern) NextSample(ctx context.Context) (pmedia.Sample, error) {
	if err := ctx.Err(); err != nil {
		return pmedia.Sample{}, err
	}
	if p.cfg.Frames > 0 && p.n >= p.cfg.Frames {
		return pmedia.Sample{}, io.EOF
	}
	if p.n == 0 {
		p.first.Store(time.Now().UnixNano())
	}
	at := p.Started().Add(time.Duration(p.n) * time.Second / time.Duration(p.cfg.FPS))
	DrawTestPattern(p.img, p.n)
	frame, _, err := p.enc.Encode(&vpx.Image{Width: p.cfg.Width, Height: p.cfg.Height, Y: p.img.Y, U: p.img.Cb, V: p.img.Cr,
		YStride: p.img.YStride, UStride: p.img.CStride, VStride: p.img.CStride}, p.n == 0 || p.keyRq.Swap(false))
	if err != nil {
		return pmedia.Sample{}, err
	}
	data := append([]byte(nil), frame...) // the encoder reuses its buffer
	p.n++
	return pmedia.Sample{Data: data, Timestamp: at, Duration: time.Second / time.Duration(p.cfg.FPS)}, nil
}

// Started is when frame 0 was made, zero before. Frame n is stamped as
// captured at Started + n/FPS (its Timestamp), which a publication's
// sender reports give, so another source stamping its samples on the same
// clock (a tone that beeps on some frames) is received in step with it.
func (p *TestPattern) Started() time.Time {
	if ns := p.first.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// RequestKeyframe makes the next frame a key frame (on a receiver's PLI).
func (p *TestPattern) RequestKeyframe() { p.keyRq.Store(true) }

// Close frees the encoder.
func (p *TestPattern) Close() error { return p.enc.Close() }
