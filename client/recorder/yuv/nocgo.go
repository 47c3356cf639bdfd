//go:build !cgo

package yuv

// Available reports whether this build has libyuv.
const Available = false

// ScalePlane returns ErrNoLibyuv.
func ScalePlane(dst, src Plane, f Filter) error { return ErrNoLibyuv }

// I420ToRGB returns ErrNoLibyuv.
func I420ToRGB(rgb []byte, rgbStride int, y, u, v Plane) error { return ErrNoLibyuv }

// I444ToRGB returns ErrNoLibyuv.
func I444ToRGB(rgb []byte, rgbStride int, y, u, v Plane) error { return ErrNoLibyuv }

// Transpose returns ErrNoLibyuv.
func Transpose(dst, src Plane) error { return ErrNoLibyuv }

// HalveRGB returns ErrNoLibyuv.
func HalveRGB(dst []byte, dstStride int, src []byte, srcStride, w, h int) error { return ErrNoLibyuv }
