package recorder

import (
	"fmt"
	"math"

	"github.com/khadga/khadga/client/recorder/yuv"
)

// Scaler turns I420 pictures of one source size into packed RGB frames
// (uint8, H×W×3, row-major) of one output size, with libyuv's SIMD rows
// (package yuv).
//
// It resizes in YUV and converts last: conversion is affine, so this equals
// converting first and resizing (up to rounding), on a fraction of the
// pixels. Luma is resized to the output size and chroma to half of it, as
// in I420 itself. Where a plane shrinks by 2 or more both ways it is first
// halved with a rounded 2×2 box, as often as that holds, so no source pixel
// is skipped and nothing aliases; what remains (less than 2:1 one way, or
// any upscale) is bilinear. Both filters round, so flat areas stay exactly
// flat (libyuv's box at other ratios truncates, which would darken).
//
// A crop is a pointer offset into the decoder's planes, at even luma
// coordinates so the chroma planes line up; to keep every halving an exact
// 2:1, the rectangle read is trimmed to a multiple of a power of two (4
// for one halving of luma and chroma), losing at most a few source pixels
// at its edges.
//
// A Scaler is not safe for concurrent use; each track has its own.
type Scaler struct {
	src, dst Size
	fit      Fit
	// rect is where the picture lands in the output (smaller under FitPad).
	rx, ry, rw, rh int
	// The source rectangle used, in luma pixels (x0, y0 even), and the
	// columns read around it: pw from x0-ml (see margins).
	x0, y0, sw, sh int
	ml, pw         int
	// The resizers of the luma and chroma planes, and the resized planes:
	// luma rw×rh, chroma cw×ch (rw/2×rh/2, or rw×rh when a side is odd).
	yr, cr     *resizer
	py, pu, pv yuv.Plane
	cw, ch     int
}

// NewScaler prepares a Scaler from src to dst with fit. Without cgo (no
// libyuv) it returns yuv.ErrNoLibyuv.
func NewScaler(src, dst Size, fit Fit) (*Scaler, error) {
	if !src.Valid() || !dst.Valid() {
		return nil, fmt.Errorf("recorder: scale %v to %v: sides must be 1..%d", src, dst, MaxSide)
	}
	if !yuv.Available {
		return nil, fmt.Errorf("recorder: scale: %w", yuv.ErrNoLibyuv)
	}
	s := &Scaler{src: src, dst: dst, fit: fit}
	// The source rectangle used, in luma pixels.
	sw, sh := float64(src.W), float64(src.H)
	s.rw, s.rh = dst.W, dst.H
	srcAspect := float64(src.W) / float64(src.H)
	dstAspect := float64(dst.W) / float64(dst.H)
	switch fit {
	case FitCrop:
		if srcAspect > dstAspect { // too wide: cut left and right
			sw = float64(src.H) * dstAspect
		} else {
			sh = float64(src.W) / dstAspect
		}
	case FitPad:
		if srcAspect > dstAspect { // too wide: bars above and below
			s.rh = max(1, int(math.Round(float64(dst.W)/srcAspect)))
		} else {
			s.rw = max(1, int(math.Round(float64(dst.H)*srcAspect)))
		}
		s.rx, s.ry = (dst.W-s.rw)/2, (dst.H-s.rh)/2
	case FitStretch:
	default:
		return nil, fmt.Errorf("recorder: unknown fit %v", fit)
	}
	// Chroma is resized to half the output, as in I420, unless a side is
	// odd: then half-size chroma cannot cover the picture exactly, and it
	// is resized to the output size and converted as I444.
	s.cw, s.ch = s.rw/2, s.rh/2
	if s.rw%2 == 1 || s.rh%2 == 1 {
		s.cw, s.ch = s.rw, s.rh
	}
	ky := halvings(sw, sh, s.rw, s.rh)
	kc := halvings(sw/2, sh/2, s.cw, s.ch)
	unit := 1 // the crop's sides are multiples of unit
	if ky > 0 || kc > 0 {
		unit = max(1<<ky, 2<<kc)
	}
	s.x0, s.sw = centre(src.W, sw, unit)
	s.y0, s.sh = centre(src.H, sh, unit)
	s.ml, s.pw = 0, s.sw
	if ky > 0 || kc > 0 {
		s.ml, s.pw = margins(src.W, s.x0, s.sw, unit, max(32<<ky, 64<<kc))
	}
	s.yr = newResizer(s.pw, s.sh, ky, s.rw, s.rh, s.ml, s.sw)
	s.cr = newResizer((s.pw+1)/2, (s.sh+1)/2, kc, s.cw, s.ch, s.ml/2, (s.sw+1)/2)
	s.py = newPlane(s.rw, s.rh)
	s.pu = newPlane(s.cw, s.ch)
	s.pv = newPlane(s.cw, s.ch)
	return s, nil
}

// halvings is how many times a w×h span can be halved both ways while it
// stays at least twice the output size: each halving is a 2×2 box.
func halvings(w, h float64, outW, outH int) int {
	k := 0
	for w/float64(outW) >= 2 && h/float64(outH) >= 2 && w >= 16 && h >= 4 {
		w, h = w/2, h/2
		k++
	}
	return k
}

// margins widens the span of sw columns at x0, in a line of n, so that the
// halved planes' rows are whole multiples of libyuv's 32-sample SIMD steps
// (its remainders go through plain C and a copy): the read span grows to a
// multiple of mult, with a left margin ml that is a multiple of unit, if
// the picture has those columns. The margins are halved with the rest and
// then left out.
func margins(n, x0, sw, unit, mult int) (ml, pw int) {
	pw = (sw + mult - 1) / mult * mult
	ml = (pw - sw) / 2 / unit * unit
	if x0-ml < 0 || x0-ml+pw > n {
		return 0, sw
	}
	return ml, pw
}

// centre picks a span of about want samples, a multiple of unit, centred
// in a line of n samples, starting at an even sample.
func centre(n int, want float64, unit int) (start, span int) {
	span = min(n, max(1, int(math.Round(want))))
	if unit > 1 {
		span = max(unit, span/unit*unit)
	}
	return (n - span) / 2 &^ 1, span
}

func newPlane(w, h int) yuv.Plane {
	return yuv.Plane{Pix: make([]byte, w*h), Stride: w, W: w, H: h}
}

// Src is the source size the Scaler was made for.
func (s *Scaler) Src() Size { return s.src }

// Dst is the output size.
func (s *Scaler) Dst() Size { return s.dst }

// FrameBytes is the size of one output frame, W×H×3.
func (s *Scaler) FrameBytes() int { return s.dst.W * s.dst.H * 3 }

// Convert writes img, resized and converted to RGB, into out, which must hold
// FrameBytes bytes. img must have the Scaler's source size. img's planes
// are only read during the call, so they may be the decoder's own.
func (s *Scaler) Convert(out []byte, img *I420) error {
	if img.Width != s.src.W || img.Height != s.src.H {
		return fmt.Errorf("recorder: scaler for %v got %dx%d", s.src, img.Width, img.Height)
	}
	if err := img.check(); err != nil {
		return err
	}
	if len(out) < s.FrameBytes() {
		return fmt.Errorf("recorder: output buffer %d bytes, need %d", len(out), s.FrameBytes())
	}
	out = out[:s.FrameBytes()]
	cw, ch := (s.src.W+1)/2, (s.src.H+1)/2
	x := s.x0 - s.ml
	y := yuv.Plane{Pix: img.Y, Stride: img.YStride, W: s.src.W, H: s.src.H}.Sub(x, s.y0, s.pw, s.sh)
	u := yuv.Plane{Pix: img.U, Stride: img.UStride, W: cw, H: ch}.Sub(x/2, s.y0/2, (s.pw+1)/2, (s.sh+1)/2)
	v := yuv.Plane{Pix: img.V, Stride: img.VStride, W: cw, H: ch}.Sub(x/2, s.y0/2, (s.pw+1)/2, (s.sh+1)/2)
	if err := s.yr.resize(s.py, y); err != nil {
		return err
	}
	if err := s.cr.resize(s.pu, u); err != nil {
		return err
	}
	if err := s.cr.resize(s.pv, v); err != nil {
		return err
	}
	if s.rw != s.dst.W || s.rh != s.dst.H {
		clear(out) // pad bars are black
	}
	stride := s.dst.W * 3
	if s.cw == s.rw && s.ch == s.rh {
		return yuv.I444ToRGB(out[s.ry*stride+s.rx*3:], stride, s.py, s.pu, s.pv)
	}
	return yuv.I420ToRGB(out[s.ry*stride+s.rx*3:], stride, s.py, s.pu, s.pv)
}

// resizer resizes one plane: k 2×2 box halvings, then bilinear down the
// columns, then bilinear along the rows done as columns of the transposed
// plane. libyuv filters columns 32 samples a step but rows about one at a
// time (ScaleFilterCols), which made the row pass most of the cost; two
// transposes cost less than that.
type resizer struct {
	halves []yuv.Plane
	// The columns used, after the halvings: off to off+w of each row.
	off, w int
	// Scratch for each pass, W == 0 where a pass is skipped: rows resized
	// (all columns, then the w used), transposed (H×w), and resized again
	// (H×W).
	rows, tr, cols yuv.Plane
}

// newResizer prepares to resize the w used columns from off of w×h planes
// of width pw, halved k times, to outW×outH.
func newResizer(pw, h, k, outW, outH, off, w int) *resizer {
	r := &resizer{off: off >> k, w: w >> k}
	for range k {
		pw, h = pw/2, h/2
		r.halves = append(r.halves, newPlane(pw, h))
	}
	if r.w != outW {
		if h != outH {
			r.rows = newPlane(pw, outH)
		}
		r.tr = newPlane(outH, r.w)
		r.cols = newPlane(outH, outW)
	}
	return r
}

// resize writes src, which has the size newResizer was given, resized into dst.
func (r *resizer) resize(dst, src yuv.Plane) error {
	for _, h := range r.halves {
		if err := yuv.ScalePlane(h, src, yuv.Box); err != nil {
			return err
		}
		src = h
	}
	if r.tr.W == 0 { // same width: one vertical pass (or a copy)
		return yuv.ScalePlane(dst, src.Sub(r.off, 0, r.w, src.H), yuv.Bilinear)
	}
	if r.rows.W != 0 {
		if err := yuv.ScalePlane(r.rows, src, yuv.Bilinear); err != nil {
			return err
		}
		src = r.rows
	}
	if err := yuv.Transpose(r.tr, src.Sub(r.off, 0, r.w, src.H)); err != nil {
		return err
	}
	if err := yuv.ScalePlane(r.cols, r.tr, yuv.Bilinear); err != nil {
		return err
	}
	return yuv.Transpose(dst, r.cols)
}
