package recorder

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxSide caps the width and height of output frames and of the decoded
// source frames the scaler accepts: a remote peer chooses the source size.
const MaxSide = 4096

// Size is a frame size in pixels.
type Size struct{ W, H int }

func (s Size) String() string { return fmt.Sprintf("%dx%d", s.W, s.H) }

// Valid reports whether both sides are in 1..MaxSide.
func (s Size) Valid() bool { return s.W > 0 && s.H > 0 && s.W <= MaxSide && s.H <= MaxSide }

// MarshalText writes s as ParseSize reads it.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads s as ParseSize does, for flags and config files.
func (s *Size) UnmarshalText(b []byte) error {
	x, err := ParseSize(string(b))
	if err == nil {
		*s = x
	}
	return err
}

// ParseSize parses "WxH", for example "224x224".
func ParseSize(v string) (Size, error) {
	w, h, ok := strings.Cut(strings.ToLower(v), "x")
	if !ok {
		return Size{}, fmt.Errorf("size %q: want WxH", v)
	}
	sw, err1 := strconv.Atoi(w)
	sh, err2 := strconv.Atoi(h)
	s := Size{sw, sh}
	if err1 != nil || err2 != nil || !s.Valid() {
		return Size{}, fmt.Errorf("size %q: want WxH with sides 1..%d", v, MaxSide)
	}
	return s, nil
}

// Fit says how a source frame is fitted to an output size of another shape.
type Fit int

const (
	// FitCrop scales the source to cover the output and cuts the overflow
	// evenly from both sides: no borders, nothing distorted.
	FitCrop Fit = iota
	// FitPad scales the source to fit inside the output and fills the rest
	// with black: nothing lost, nothing distorted.
	FitPad
	// FitStretch scales each axis on its own: nothing lost, shapes distorted.
	FitStretch
)

func (f Fit) String() string {
	switch f {
	case FitCrop:
		return "crop"
	case FitPad:
		return "pad"
	case FitStretch:
		return "stretch"
	}
	return "fit(" + strconv.Itoa(int(f)) + ")"
}

// MarshalText writes f as ParseFit reads it.
func (f Fit) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText reads f as ParseFit does, for flags and config files.
func (f *Fit) UnmarshalText(b []byte) error {
	x, err := ParseFit(string(b))
	if err == nil {
		*f = x
	}
	return err
}

// ParseFit parses "crop", "pad" or "stretch".
func ParseFit(v string) (Fit, error) {
	for _, f := range []Fit{FitCrop, FitPad, FitStretch} {
		if v == f.String() {
			return f, nil
		}
	}
	return 0, fmt.Errorf("fit %q: want crop, pad or stretch", v)
}

// I420 is a planar YUV 4:2:0 picture (BT.601, limited range, as VP8 and VP9
// decode). The planes may belong to a decoder and be valid only until its
// next call: convert them before then.
type I420 struct {
	Width, Height             int
	Y, U, V                   []byte
	YStride, UStride, VStride int
}

// ErrBadImage: an I420 picture's planes are too small for its size.
var ErrBadImage = errors.New("recorder: malformed I420 picture")

// check verifies that the planes hold the picture, so the scaler's loops can
// index without further checks.
func (m *I420) check() error {
	if !(Size{m.Width, m.Height}).Valid() {
		return fmt.Errorf("%w: size %dx%d", ErrBadImage, m.Width, m.Height)
	}
	cw, ch := (m.Width+1)/2, (m.Height+1)/2
	if m.YStride < m.Width || m.UStride < cw || m.VStride < cw ||
		len(m.Y) < (m.Height-1)*m.YStride+m.Width ||
		len(m.U) < (ch-1)*m.UStride+cw || len(m.V) < (ch-1)*m.VStride+cw {
		return fmt.Errorf("%w: planes too small for %dx%d", ErrBadImage, m.Width, m.Height)
	}
	return nil
}

// NewI420 allocates a tightly packed picture.
func NewI420(w, h int) *I420 {
	cw, ch := (w+1)/2, (h+1)/2
	buf := make([]byte, w*h+2*cw*ch)
	return &I420{
		Width: w, Height: h,
		Y: buf[:w*h], U: buf[w*h : w*h+cw*ch], V: buf[w*h+cw*ch:],
		YStride: w, UStride: cw, VStride: cw,
	}
}
