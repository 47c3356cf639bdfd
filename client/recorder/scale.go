package recorder

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Scaler turns I420 pictures of one source size into packed RGB frames
// (uint8, H×W×3, row-major) of one output size.
//
// It resizes in YUV and converts last: conversion is affine, so this equals
// converting first and resizing (up to rounding), on a fraction of the
// pixels. Luma is resized to the output size and chroma to half of it, as
// in I420 itself. Downscaling averages areas (a box filter over the exact
// footprint of each output pixel, so no source pixel is skipped and nothing
// aliases); upscaling interpolates bilinearly. The filters are computed once
// per source size, with 8-bit weights, and the hot loops are integer only.
//
// A Scaler is not safe for concurrent use; each track has its own.
type Scaler struct {
	src, dst Size
	fit      Fit
	// rect is where the picture lands in the output (smaller under FitPad).
	rx, ry, rw, rh int
	y, u, v        plane
	// Resized planes: luma rw×rh, chroma cw×ch.
	py, pu, pv []byte
	cw, ch     int
}

// NewScaler prepares a Scaler from src to dst with fit.
func NewScaler(src, dst Size, fit Fit) (*Scaler, error) {
	if !src.Valid() || !dst.Valid() {
		return nil, fmt.Errorf("recorder: scale %v to %v: sides must be 1..%d", src, dst, MaxSide)
	}
	s := &Scaler{src: src, dst: dst, fit: fit}
	// The source rectangle used, in luma pixels.
	sx, sy, sw, sh := 0.0, 0.0, float64(src.W), float64(src.H)
	s.rw, s.rh = dst.W, dst.H
	srcAspect := float64(src.W) / float64(src.H)
	dstAspect := float64(dst.W) / float64(dst.H)
	switch fit {
	case FitCrop:
		if srcAspect > dstAspect { // too wide: cut left and right
			sw = float64(src.H) * dstAspect
			sx = (float64(src.W) - sw) / 2
		} else {
			sh = float64(src.W) / dstAspect
			sy = (float64(src.H) - sh) / 2
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
	s.cw, s.ch = (s.rw+1)/2, (s.rh+1)/2
	scw, sch := (src.W+1)/2, (src.H+1)/2
	// Chroma samples sit at even luma positions (MPEG-2/VP8 siting is close
	// enough); halving the luma rectangle maps it onto the chroma plane.
	s.y = newPlane(src.W, src.H, sx, sy, sw, sh, s.rw, s.rh)
	// With an odd output side the last chroma sample covers one luma
	// column past the picture, so the chroma span grows by that much.
	csw := sw / 2 * float64(2*s.cw) / float64(s.rw)
	csh := sh / 2 * float64(2*s.ch) / float64(s.rh)
	s.u = newPlane(scw, sch, sx/2, sy/2, csw, csh, s.cw, s.ch)
	s.v = s.u // same geometry; the planes are resampled one after the other
	s.py = make([]byte, s.rw*s.rh)
	s.pu = make([]byte, s.cw*s.ch)
	s.pv = make([]byte, s.cw*s.ch)
	return s, nil
}

// Src is the source size the Scaler was made for.
func (s *Scaler) Src() Size { return s.src }

// Dst is the output size.
func (s *Scaler) Dst() Size { return s.dst }

// FrameBytes is the size of one output frame, W×H×3.
func (s *Scaler) FrameBytes() int { return s.dst.W * s.dst.H * 3 }

// Convert writes img, resized and converted to RGB, into out, which must hold
// FrameBytes bytes. img must have the Scaler's source size.
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
	s.y.resample(s.py, img.Y, img.YStride)
	s.u.resample(s.pu, img.U, img.UStride)
	s.v.resample(s.pv, img.V, img.VStride)
	if s.rw != s.dst.W || s.rh != s.dst.H {
		clear(out) // pad bars are black
	}
	for y := 0; y < s.rh; y++ {
		row := out[((s.ry+y)*s.dst.W+s.rx)*3:]
		yuvRowToRGB(row[:s.rw*3], s.py[y*s.rw:(y+1)*s.rw], s.pu[(y/2)*s.cw:], s.pv[(y/2)*s.cw:])
	}
	return nil
}

// plane resamples one plane's source rectangle to a w×h grid. Where it
// shrinks by 2 or more both ways, it first halves the plane with a 2×2 box
// (cheap, eight pixels a step), as often as that holds, so the filters that
// follow have few taps. Then, for each output row, it filters down the
// columns into tmp and along tmp.
type plane struct {
	w, h   int    // output size
	hf     taps   // horizontal filter, indices relative to x0
	vf     taps   // vertical filter, absolute rows
	x0     int    // first source column any output pixel reads
	span   int    // number of source columns read
	tmp    []byte // one row after the vertical pass, plus hf.k bytes of slack
	halves []halfPlane
}

// halfPlane is the scratch picture of one halving.
type halfPlane struct {
	w, h int
	pix  []byte
}

func newPlane(srcW, srcH int, sx, sy, sw, sh float64, w, h int) plane {
	p := plane{w: w, h: h}
	for sw/float64(w) >= 2 && sh/float64(h) >= 2 && srcW >= 16 && srcH >= 2 {
		srcW, srcH = srcW/2, srcH/2
		sx, sy, sw, sh = sx/2, sy/2, sw/2, sh/2
		p.halves = append(p.halves, halfPlane{w: srcW, h: srcH, pix: make([]byte, srcW*srcH)})
	}
	p.hf = makeTaps(srcW, sx, sw, w)
	p.vf = makeTaps(srcH, sy, sh, h)
	lo, hi := p.hf.bounds()
	p.x0, p.span = lo, hi-lo
	for i := range p.hf.start {
		p.hf.start[i] -= int32(lo)
	}
	p.hf.pack()
	p.tmp = make([]byte, p.span+p.hf.k)
	return p
}

// halve writes the 2×2 box average of src into h. Four output pixels a
// step: two 8-byte loads, their even and odd bytes summed in 16-bit lanes.
func halve(h *halfPlane, src []byte, stride int) {
	for y := 0; y < h.h; y++ {
		r0 := src[2*y*stride:]
		r1 := src[(2*y+1)*stride:]
		d := h.pix[y*h.w : (y+1)*h.w]
		x := 0
		for ; x+4 <= len(d); x += 4 {
			a := binary.LittleEndian.Uint64(r0[2*x : 2*x+8])
			b := binary.LittleEndian.Uint64(r1[2*x : 2*x+8])
			v := a&lanes16 + a>>8&lanes16 + b&lanes16 + b>>8&lanes16
			v = (v + 0x0002000200020002) >> 2 & lanes16
			v = (v | v>>8) & 0x0000FFFF0000FFFF
			v = v | v>>16
			binary.LittleEndian.PutUint32(d[x:x+4], uint32(v))
		}
		for ; x < len(d); x++ {
			d[x] = uint8((int(r0[2*x]) + int(r0[2*x+1]) + int(r1[2*x]) + int(r1[2*x+1]) + 2) >> 2)
		}
	}
}

func (p *plane) resample(dst []byte, src []byte, stride int) {
	for i := range p.halves {
		halve(&p.halves[i], src, stride)
		src, stride = p.halves[i].pix, p.halves[i].w
	}
	k := p.vf.k
	tmp := p.tmp[:p.span]
	for y := 0; y < p.h; y++ {
		st := int(p.vf.start[y])
		verticalPass(tmp, src, st*stride+p.x0, stride, p.vf.w[y*k:y*k+k], int(p.vf.n[y]))
		horizontalPass(dst[y*p.w:(y+1)*p.w], p.tmp, &p.hf)
	}
}

const (
	lanes16 = 0x00FF00FF00FF00FF // the even bytes of a word, one per 16-bit lane
	half16  = 0x0080008000800080 // 0.5 in each lane, for rounding
)

// verticalPass sets tmp[x] to the rounded weighted sum of n rows starting at
// src[base+x], row pitch stride. It works on eight pixels per step: the even
// and odd bytes of a 64-bit load go in 16-bit lanes, which cannot overflow
// because the weights sum to 256.
func verticalPass(tmp []byte, src []byte, base, stride int, w []int16, n int) {
	x := 0
	for ; x+8 <= len(tmp); x += 8 {
		var lo, hi uint64
		off := base + x
		for j := 0; j < n; j++ {
			v := binary.LittleEndian.Uint64(src[off : off+8])
			wj := uint64(w[j])
			lo += (v & lanes16) * wj
			hi += (v >> 8 & lanes16) * wj
			off += stride
		}
		lo = (lo + half16) >> 8 & lanes16
		hi = (hi + half16) >> 8 & lanes16
		binary.LittleEndian.PutUint64(tmp[x:x+8], lo|hi<<8)
	}
	for ; x < len(tmp); x++ {
		var sum uint32
		for j := 0; j < n; j++ {
			sum += uint32(src[base+j*stride+x]) * uint32(w[j])
		}
		tmp[x] = uint8((sum + 128) >> 8)
	}
}

// horizontalPass filters one row. tmp has k readable bytes past the last
// column any filter needs (zero weights reach them), so every output reads
// exactly k taps and the common cases unroll.
func horizontalPass(dst []byte, tmp []byte, f *taps) {
	switch f.k {
	case 2:
		// w0 + w1 = 256, so t0*w0 + t1*w1 = t1*256 + (t0-t1)*w0: one
		// multiply, and start and w0 come in one packed load.
		pk := f.packed[:len(dst)]
		for x, v := range pk {
			st := int(v >> 9)
			t := tmp[st : st+2 : st+2]
			t1 := int32(t[1])
			dst[x] = uint8((t1<<8 + (int32(t[0])-t1)*int32(v&0x1ff) + 128) >> 8)
		}
	case 3:
		for x := range dst {
			st := int(f.start[x])
			t, w := tmp[st:st+3:st+3], f.w[3*x:3*x+3:3*x+3]
			sum := uint32(t[0])*uint32(w[0]) + uint32(t[1])*uint32(w[1]) + uint32(t[2])*uint32(w[2])
			dst[x] = uint8((sum + 128) >> 8)
		}
	case 4:
		for x := range dst {
			st := int(f.start[x])
			t, w := tmp[st:st+4:st+4], f.w[4*x:4*x+4:4*x+4]
			sum := uint32(t[0])*uint32(w[0]) + uint32(t[1])*uint32(w[1]) +
				uint32(t[2])*uint32(w[2]) + uint32(t[3])*uint32(w[3])
			dst[x] = uint8((sum + 128) >> 8)
		}
	default:
		k := f.k
		for x := range dst {
			st := int(f.start[x])
			t, w := tmp[st:st+k], f.w[x*k:x*k+k]
			var sum uint32
			for j, wj := range w {
				sum += uint32(t[j]) * uint32(wj)
			}
			dst[x] = uint8((sum + 128) >> 8)
		}
	}
}

// taps is a 1-D resampling filter: output i reads source samples
// start[i]..start[i]+n[i]-1 with weights w[i*k:], which sum to 256.
type taps struct {
	k     int
	start []int32
	n     []int32
	w     []int16
	// packed holds start<<9 | w[0] per output when k is 2.
	packed []uint32
}

// pack fills packed from start and w, once start is final.
func (t *taps) pack() {
	if t.k != 2 {
		return
	}
	t.packed = make([]uint32, len(t.start))
	for i, s := range t.start {
		t.packed[i] = uint32(s)<<9 | uint32(t.w[2*i])
	}
}

func (t *taps) bounds() (lo, hi int) {
	lo, hi = math.MaxInt, 0
	for i, s := range t.start {
		lo = min(lo, int(s))
		hi = max(hi, int(s+t.n[i]))
	}
	return lo, hi
}

// makeTaps builds the filter taking span samples from off (in a line of
// srcLen samples) to n samples. Shrinking by 2 or more averages each output
// sample's exact footprint (area); anything less, including the remainder
// after the 2×2 halvings, interpolates linearly between the two nearest
// samples, which keeps every filter at two taps on the common path.
func makeTaps(srcLen int, off, span float64, n int) taps {
	scale := span / float64(n) // source samples per output sample
	k := 2
	if scale >= 2 {
		k = int(math.Ceil(scale)) + 1
	}
	t := taps{k: k, start: make([]int32, n), n: make([]int32, n), w: make([]int16, n*k)}
	fw := make([]float64, k)
	for i := 0; i < n; i++ {
		clear(fw)
		var first int
		if scale >= 2 { // area: overlap of each source sample with [a, b)
			a, b := off+float64(i)*scale, off+float64(i+1)*scale
			first = int(math.Floor(a))
			for j := 0; j < k; j++ {
				lo, hi := max(a, float64(first+j)), min(b, float64(first+j+1))
				if hi > lo {
					fw[j] = (hi - lo) / scale
				}
			}
		} else { // bilinear around the output sample's centre
			c := off + (float64(i)+0.5)*scale - 0.5
			first = int(math.Floor(c))
			f := c - float64(first)
			fw[0], fw[1] = 1-f, f
		}
		// Fold taps that fall off the line onto the edge sample.
		clampedFirst := min(max(first, 0), srcLen-1)
		last := clampedFirst
		iw := make([]int, k) // weights per clamped index, relative to clampedFirst
		for j := 0; j < k; j++ {
			idx := min(max(first+j, 0), srcLen-1)
			if fw[j] == 0 {
				continue
			}
			iw[idx-clampedFirst] += int(math.Round(fw[j] * 256))
			last = max(last, idx)
		}
		cnt := last - clampedFirst + 1
		// Make the weights sum to exactly 256 so flat areas stay flat.
		sum, big := 0, 0
		for j := 0; j < cnt; j++ {
			sum += iw[j]
			if iw[j] > iw[big] {
				big = j
			}
		}
		iw[big] += 256 - sum
		t.start[i] = int32(clampedFirst)
		t.n[i] = int32(cnt)
		for j := 0; j < cnt; j++ {
			t.w[i*k+j] = int16(iw[j])
		}
	}
	return t
}
