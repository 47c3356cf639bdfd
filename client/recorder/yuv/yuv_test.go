//go:build cgo

package yuv

import (
	"errors"
	"math"
	"testing"
)

func newPlane(w, h int, fill func(x, y int) byte) Plane {
	p := Plane{Pix: make([]byte, w*h), Stride: w, W: w, H: h}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			p.Pix[y*w+x] = fill(x, y)
		}
	}
	return p
}

// TestI420ToRGBMatchesBT601 checks every Y at several U, V against the
// BT.601 limited-range formulas in floating point, and the byte order.
func TestI420ToRGBMatchesBT601(t *testing.T) {
	const w, h = 256, 2
	for _, uv := range [][2]byte{{128, 128}, {90, 240}, {240, 90}, {16, 16}, {200, 60}} {
		y := newPlane(w, h, func(x, _ int) byte { return byte(x) })
		u := newPlane(w/2, 1, func(int, int) byte { return uv[0] })
		v := newPlane(w/2, 1, func(int, int) byte { return uv[1] })
		rgb := make([]byte, w*h*3)
		if err := I420ToRGB(rgb, w*3, y, u, v); err != nil {
			t.Fatal(err)
		}
		// The same picture with chroma at full resolution converts the same.
		u4 := newPlane(w, h, func(int, int) byte { return uv[0] })
		v4 := newPlane(w, h, func(int, int) byte { return uv[1] })
		rgb4 := make([]byte, w*h*3)
		if err := I444ToRGB(rgb4, w*3, y, u4, v4); err != nil {
			t.Fatal(err)
		}
		if string(rgb4) != string(rgb) {
			t.Fatalf("U=%d V=%d: I444 and I420 conversions differ", uv[0], uv[1])
		}
		U, V := float64(uv[0])-128, float64(uv[1])-128
		for x := 0; x < w; x++ {
			Y := 1.164 * (float64(x) - 16)
			want := [3]float64{Y + 1.596*V, Y - 0.391*U - 0.813*V, Y + 2.018*U}
			for c, f := range want {
				got := float64(rgb[3*x+c])
				if d := math.Abs(got - math.Min(math.Max(math.Round(f), 0), 255)); d > 3 {
					t.Fatalf("Y=%d U=%d V=%d channel %d: %v, want %.1f", x, uv[0], uv[1], c, got, f)
				}
			}
		}
	}
}

// TestScalePlaneFlat: a flat plane stays flat, at that level, through
// exact box reductions and through bilinear at any ratio, down and up.
// (Box at other ratios truncates, which is why the recorder does not use it.)
func TestScalePlaneFlat(t *testing.T) {
	src := newPlane(332, 212, func(int, int) byte { return 150 })
	for _, c := range []struct {
		w, h int
		f    Filter
	}{{166, 106, Box}, {83, 53, Box}, {300, 200, Bilinear}, {400, 301, Bilinear}, {50, 70, Bilinear}, {111, 67, Bilinear}} {
		dst := newPlane(c.w, c.h, func(int, int) byte { return 0 })
		if err := ScalePlane(dst, src, c.f); err != nil {
			t.Fatal(err)
		}
		for i, v := range dst.Pix {
			if v != 150 {
				t.Fatalf("%dx%d filter %d: sample %d is %d, want 150", c.w, c.h, c.f, i, v)
			}
		}
	}
}

// TestScalePlaneHalves: an exact 2:1 box reduction is the rounded mean of
// each 2×2 block, and a sub-plane scales only its rectangle.
func TestScalePlaneHalves(t *testing.T) {
	full := newPlane(40, 30, func(x, y int) byte { return byte(x*5 + y*3) })
	src := full.Sub(4, 2, 32, 24)
	dst := newPlane(16, 12, func(int, int) byte { return 0 })
	if err := ScalePlane(dst, src, Box); err != nil {
		t.Fatal(err)
	}
	for y := 0; y < 12; y++ {
		for x := 0; x < 16; x++ {
			at := func(dx, dy int) int { return int(full.Pix[(2+2*y+dy)*40+4+2*x+dx]) }
			want := (at(0, 0) + at(1, 0) + at(0, 1) + at(1, 1) + 2) / 4
			if got := int(dst.Pix[y*16+x]); got != want {
				t.Fatalf("(%d,%d): %d, want %d", x, y, got, want)
			}
		}
	}
}

func TestRejectsBadPlanes(t *testing.T) {
	ok := newPlane(8, 8, func(int, int) byte { return 0 })
	short := Plane{Pix: make([]byte, 10), Stride: 8, W: 8, H: 8}
	if err := ScalePlane(ok, short, Box); !errors.Is(err, ErrBadPlane) {
		t.Errorf("short source: %v", err)
	}
	if err := ScalePlane(short, ok, Box); !errors.Is(err, ErrBadPlane) {
		t.Errorf("short destination: %v", err)
	}
	c := newPlane(4, 4, func(int, int) byte { return 0 })
	if err := I420ToRGB(make([]byte, 8*8*3-1), 24, ok, c, c); !errors.Is(err, ErrBadPlane) {
		t.Errorf("short RGB buffer: %v", err)
	}
	if err := I420ToRGB(make([]byte, 8*8*3), 24, ok, c.Sub(0, 0, 3, 4), c); !errors.Is(err, ErrBadPlane) {
		t.Errorf("narrow chroma: %v", err)
	}
	if err := I444ToRGB(make([]byte, 8*8*3), 24, ok, c, c); !errors.Is(err, ErrBadPlane) {
		t.Errorf("I444 with quarter chroma: %v", err)
	}
}

func TestTranspose(t *testing.T) {
	full := newPlane(37, 21, func(x, y int) byte { return byte(x*7 + y*11) })
	src := full.Sub(3, 2, 30, 17)
	dst := newPlane(17, 30, func(int, int) byte { return 0 })
	if err := Transpose(dst, src); err != nil {
		t.Fatal(err)
	}
	for y := 0; y < 30; y++ {
		for x := 0; x < 17; x++ {
			if got, want := dst.Pix[y*17+x], full.Pix[(2+x)*37+3+y]; got != want {
				t.Fatalf("(%d,%d): %d, want %d", x, y, got, want)
			}
		}
	}
	if err := Transpose(newPlane(30, 17, func(int, int) byte { return 0 }), src); !errors.Is(err, ErrBadPlane) {
		t.Errorf("wrong shape: %v", err)
	}
}

// TestHalveRGB: each output sample is within one of the rounded mean of
// its 2×2 block, channel by channel, with strides wider than the rows and
// rows long enough for the SIMD path and its remainder.
func TestHalveRGB(t *testing.T) {
	const w, h, ss, ds = 230, 22, 230*3 + 5, 115*3 + 7
	src := make([]byte, h*ss)
	for i := range src {
		src[i] = byte(i*37 + i/ss*11)
	}
	dst := make([]byte, (h/2)*ds)
	if err := HalveRGB(dst, ds, src, ss, w, h); err != nil {
		t.Fatal(err)
	}
	for y := 0; y < h/2; y++ {
		for x := 0; x < w/2; x++ {
			for c := 0; c < 3; c++ {
				at := func(dx, dy int) int { return int(src[(2*y+dy)*ss+(2*x+dx)*3+c]) }
				want := (at(0, 0) + at(1, 0) + at(0, 1) + at(1, 1) + 2) / 4
				if got := int(dst[y*ds+x*3+c]); got < want-1 || got > want+1 {
					t.Fatalf("(%d,%d) channel %d: %d, want %d", x, y, c, got, want)
				}
			}
		}
	}
	if err := HalveRGB(dst, ds, src[:(h-1)*ss+3*w-1], ss, w, h); !errors.Is(err, ErrBadPlane) {
		t.Errorf("short source: %v", err)
	}
}
