//go:build cgo

package yuv

/*
// Static, so the recorder image needs no libyuv at run time; the objects
// used need nothing beyond libc.
#cgo LDFLAGS: -l:libyuv.a -lstdc++ -lm
#include <libyuv/scale.h>
#include <libyuv/convert_argb.h>
#include <libyuv/rotate.h>
#include <libyuv/scale_rgb.h>
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Available reports whether this build has libyuv.
const Available = true

func ptr(b []byte) *C.uint8_t { return (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(b))) }

// ScalePlane resamples src to dst's size with f. The buffers are only read
// and written during the call.
func ScalePlane(dst, src Plane, f Filter) error {
	if !dst.ok() || !src.ok() {
		return fmt.Errorf("%w: scale %dx%d to %dx%d", ErrBadPlane, src.W, src.H, dst.W, dst.H)
	}
	mode := C.enum_FilterMode(C.kFilterBox)
	if f == Bilinear {
		mode = C.kFilterBilinear
	}
	C.ScalePlane(ptr(src.Pix), C.int(src.Stride), C.int(src.W), C.int(src.H),
		ptr(dst.Pix), C.int(dst.Stride), C.int(dst.W), C.int(dst.H), mode)
	return nil
}

// I420ToRGB converts a W×H picture (chroma planes at least (W+1)/2 ×
// (H+1)/2) to packed 8-bit R,G,B (in that order in memory) with BT.601
// limited-range coefficients, writing rows of 3×W bytes rgbStride apart.
func I420ToRGB(rgb []byte, rgbStride int, y, u, v Plane) error {
	cw, ch := (y.W+1)/2, (y.H+1)/2
	if !y.ok() || !u.ok() || !v.ok() || u.W < cw || u.H < ch || v.W < cw || v.H < ch ||
		rgbStride < 3*y.W || len(rgb) < (y.H-1)*rgbStride+3*y.W {
		return fmt.Errorf("%w: convert %dx%d", ErrBadPlane, y.W, y.H)
	}
	// libyuv names formats by their 32-bit little-endian word: "RAW" is
	// R,G,B in memory, "RGB24" is B,G,R.
	if C.I420ToRAW(ptr(y.Pix), C.int(y.Stride), ptr(u.Pix), C.int(u.Stride), ptr(v.Pix), C.int(v.Stride),
		ptr(rgb), C.int(rgbStride), C.int(y.W), C.int(y.H)) != 0 {
		return fmt.Errorf("%w: convert %dx%d", ErrBadPlane, y.W, y.H)
	}
	return nil
}

// I444ToRGB is I420ToRGB for chroma at full resolution: u and v are at
// least y's size.
func I444ToRGB(rgb []byte, rgbStride int, y, u, v Plane) error {
	if !y.ok() || !u.ok() || !v.ok() || u.W < y.W || u.H < y.H || v.W < y.W || v.H < y.H ||
		rgbStride < 3*y.W || len(rgb) < (y.H-1)*rgbStride+3*y.W {
		return fmt.Errorf("%w: convert %dx%d", ErrBadPlane, y.W, y.H)
	}
	if C.I444ToRAW(ptr(y.Pix), C.int(y.Stride), ptr(u.Pix), C.int(u.Stride), ptr(v.Pix), C.int(v.Stride),
		ptr(rgb), C.int(rgbStride), C.int(y.W), C.int(y.H)) != 0 {
		return fmt.Errorf("%w: convert %dx%d", ErrBadPlane, y.W, y.H)
	}
	return nil
}

// Transpose writes src's columns as dst's rows; dst is src.H×src.W.
func Transpose(dst, src Plane) error {
	if !dst.ok() || !src.ok() || dst.W != src.H || dst.H != src.W {
		return fmt.Errorf("%w: transpose %dx%d to %dx%d", ErrBadPlane, src.W, src.H, dst.W, dst.H)
	}
	C.TransposePlane(ptr(src.Pix), C.int(src.Stride), ptr(dst.Pix), C.int(dst.Stride), C.int(src.W), C.int(src.H))
	return nil
}

// HalveRGB writes the 2×2 box average of the w×h packed 8-bit three-channel
// picture src into dst, (w/2)×(h/2); rows are the strides apart. w and h
// must be even. Each sample is within one of the rounded mean: the SIMD
// rows average pairs of averages.
func HalveRGB(dst []byte, dstStride int, src []byte, srcStride, w, h int) error {
	if w < 2 || h < 2 || w%2 != 0 || h%2 != 0 || srcStride < 3*w || dstStride < 3*(w/2) ||
		len(src) < (h-1)*srcStride+3*w || len(dst) < (h/2-1)*dstStride+3*(w/2) {
		return fmt.Errorf("%w: halve RGB %dx%d", ErrBadPlane, w, h)
	}
	// Through ARGB inside libyuv; the channel order does not matter here.
	if C.RGBScale(ptr(src), C.int(srcStride), C.int(w), C.int(h),
		ptr(dst), C.int(dstStride), C.int(w/2), C.int(h/2), C.kFilterBox) != 0 {
		return fmt.Errorf("%w: halve RGB %dx%d", ErrBadPlane, w, h)
	}
	return nil
}
