// Package yuv resizes I420 planes and converts I420 to packed RGB with
// libyuv through cgo, whose row functions use SSSE3/AVX2 (NEON on arm64).
// It needs cgo and libyuv (Debian: libyuv-dev to build; it is linked
// statically, so nothing extra is needed to run); built without cgo, every
// function returns ErrNoLibyuv, like package vpx, so the rest of khadga
// still builds with CGO_ENABLED=0.
package yuv

import "errors"

// ErrNoLibyuv: this binary was built without cgo, so without libyuv.
var ErrNoLibyuv = errors.New("yuv: built without libyuv (cgo disabled); rebuild with CGO_ENABLED=1 and libyuv-dev installed")

// ErrBadPlane: a plane's buffer is too small for its size and stride, or a
// size is not positive.
var ErrBadPlane = errors.New("yuv: malformed plane")

// Filter is how ScalePlane resamples.
type Filter int

const (
	// Box averages each output sample's footprint. Exact 2:1 and 4:1
	// reductions round; other ratios truncate.
	Box Filter = iota
	// Bilinear interpolates between the two nearest samples each way,
	// rounding. Below 2:1 it reads every source sample.
	Bilinear
)

// Plane is one 8-bit plane: row y starts at Pix[y*Stride].
type Plane struct {
	Pix    []byte
	Stride int
	W, H   int
}

// ok reports whether p's buffer holds its W×H samples.
func (p Plane) ok() bool {
	return p.W > 0 && p.H > 0 && p.Stride >= p.W && len(p.Pix) >= (p.H-1)*p.Stride+p.W
}

// Sub is the w×h rectangle of p at (x, y), sharing p's memory. It panics
// if the rectangle is not inside p.
func (p Plane) Sub(x, y, w, h int) Plane {
	if x < 0 || y < 0 || w <= 0 || h <= 0 || x+w > p.W || y+h > p.H {
		panic("yuv: Sub outside the plane")
	}
	off := y*p.Stride + x
	return Plane{Pix: p.Pix[off : off+(h-1)*p.Stride+w], Stride: p.Stride, W: w, H: h}
}
