//go:build cgo

package recorder

import (
	"testing"

	"github.com/khadga/khadga/client/recorder/yuv"
)

// TestHalveMatchesGo: libyuv's halving (used with cgo) and the Go one
// (without) agree within one level, on a row with a SIMD remainder.
func TestHalveMatchesGo(t *testing.T) {
	const w, h = 226, 14
	src := make([]byte, w*h*3)
	for i := range src {
		src[i] = byte(i*31 + i/(w*3)*7)
	}
	a, b := make([]byte, w/2*h/2*3), make([]byte, w/2*h/2*3)
	if err := yuv.HalveRGB(a, w/2*3, src, w*3, w, h); err != nil {
		t.Fatal(err)
	}
	halveRGB(b, w/2*3, src, w*3, w, h)
	for i := range a {
		if d := int(a[i]) - int(b[i]); d < -1 || d > 1 {
			t.Fatalf("byte %d: libyuv %d, Go %d", i, a[i], b[i])
		}
	}
}
