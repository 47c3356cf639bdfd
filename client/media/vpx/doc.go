// Package vpx is khadga's one binding of libvpx: VP8 and VP9 decoding (the
// recorder, and peers that look at received video) and encoding (the test
// pattern peers send, and the recorder's tests and benchmarks). It is the
// only package with cgo for the codec; client/media and client/recorder
// build on it.
//
// It needs cgo and libvpx (Debian: libvpx-dev and pkg-config to build,
// libvpx7 to run). Built without cgo (the cgo build constraint leaves the
// binding out), every constructor returns ErrNoLibvpx and Codecs is empty,
// so everything else, the server included, builds with CGO_ENABLED=0.
//
// A remote sender controls what the decoder gets, so Decode refuses a
// frame over MaxFrameBytes and a picture declared larger than MaxSide or
// MaxPixels (ErrTooLarge) before libvpx allocates for it: it reads the
// size of every frame libvpx will decode, each frame of a VP9 superframe
// included, and gives a VP9 frame without a superframe index an index of
// that one frame, so that libvpx decodes nothing it did not read
// (header.go).
package vpx

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNoLibvpx: this binary was built without cgo, so without libvpx.
var ErrNoLibvpx = errors.New("vpx: built without libvpx (cgo disabled); rebuild with CGO_ENABLED=1 and libvpx-dev installed")

// ErrCodec: the codec name is not VP8 or VP9.
var ErrCodec = errors.New("vpx: unsupported codec")

// Codec names, as WebRTC MIME types.
const (
	VP8 = "video/VP8"
	VP9 = "video/VP9"
)

// canonical turns a codec name as callers write it ("video/VP8", "VP8",
// "vp8", ...) into VP8 or VP9.
func canonical(codec string) (string, error) {
	switch strings.ToUpper(strings.TrimPrefix(strings.ToLower(codec), "video/")) {
	case "VP8":
		return VP8, nil
	case "VP9":
		return VP9, nil
	}
	return "", fmt.Errorf("%w: %q", ErrCodec, codec)
}

// Limits on what a remote sender can make the decoder do.
const (
	// MaxFrameBytes caps one encoded frame handed to the decoder.
	MaxFrameBytes = 8 << 20
	// MaxSide and MaxPixels cap the picture size a frame may declare; it is
	// checked before libvpx allocates for it.
	MaxSide   = 4096
	MaxPixels = 4096 * 2304
)

// EncoderConfig configures an encoder for real-time use: no lag, constant
// bitrate, error resilient, one thread.
type EncoderConfig struct {
	// Codec is VP8 or VP9 (default VP8).
	Codec string
	// Width and Height are the picture size, even, 2 to MaxSide.
	Width, Height int
	// FPS is the frame rate the rate control assumes (default 30).
	FPS int
	// BitrateKbps is the target bitrate (default 800).
	BitrateKbps int
	// KeyframeInterval is the largest distance between key frames, in
	// frames; 0 means key frames only when Encode asks for one (a PLI).
	KeyframeInterval int
	// Speed is libvpx's cpu-used: higher is faster and looks worse. 0 means
	// the real-time maximum, 16 for VP8 and 8 for VP9.
	Speed int
}

// withDefaults checks c and fills in its defaults.
func (c EncoderConfig) withDefaults() (EncoderConfig, error) {
	if c.Codec == "" {
		c.Codec = VP8
	}
	codec, err := canonical(c.Codec)
	if err != nil {
		return c, err
	}
	c.Codec = codec
	if c.Width < 2 || c.Height < 2 || c.Width > MaxSide || c.Height > MaxSide || c.Width%2 != 0 || c.Height%2 != 0 {
		return c, fmt.Errorf("vpx: encoder of %dx%d: width and height must be even and between 2 and %d", c.Width, c.Height, MaxSide)
	}
	if c.FPS <= 0 {
		c.FPS = 30
	}
	if c.BitrateKbps <= 0 {
		c.BitrateKbps = 800
	}
	if c.KeyframeInterval <= 0 {
		c.KeyframeInterval = 100000 // on request only
	}
	if c.Speed == 0 {
		c.Speed = 16
		if c.Codec == VP9 {
			c.Speed = 8
		}
	}
	return c, nil
}

// Image is an I420 picture. A decoded one's planes point into the
// decoder's memory and are valid only until the decoder's next call.
type Image struct {
	Width, Height             int
	Y, U, V                   []byte
	YStride, UStride, VStride int
}

// check verifies that the planes hold the picture, so that C can read them
// without bounds.
func (m *Image) check() error {
	cw, ch := (m.Width+1)/2, (m.Height+1)/2
	if m.Width < 1 || m.Height < 1 || m.YStride < m.Width || m.UStride < cw || m.VStride < cw ||
		len(m.Y) < (m.Height-1)*m.YStride+m.Width ||
		len(m.U) < (ch-1)*m.UStride+cw || len(m.V) < (ch-1)*m.VStride+cw {
		return fmt.Errorf("vpx: planes too small for %dx%d", m.Width, m.Height)
	}
	return nil
}

// IsKeyFrame reports whether an encoded frame is a key frame, from its
// first bytes: the VP8 frame tag (RFC 6386 section 9.1) or the VP9
// uncompressed header (VP9 bitstream spec section 6.2).
func IsKeyFrame(codec string, frame []byte) bool {
	if len(frame) == 0 {
		return false
	}
	codec, _ = canonical(codec)
	switch codec {
	case VP8:
		// Bit 0 of the frame tag: 0 is a key frame. A key frame also carries
		// the start code 9d 01 2a at bytes 3..5.
		return frame[0]&1 == 0 && len(frame) >= 6 && frame[3] == 0x9d && frame[4] == 0x01 && frame[5] == 0x2a
	case VP9:
		b := frame[0]
		if b>>6 != 2 { // frame_marker
			return false
		}
		profile := (b>>5)&1 | (b>>4)&1<<1
		bit := 4 // next bit to read, counting from the top (0)
		if profile == 3 {
			bit++ // reserved_zero
		}
		showExisting := b >> (7 - bit) & 1
		if showExisting == 1 {
			return false
		}
		bit++
		return b>>(7-bit)&1 == 0 // frame_type 0 is KEY_FRAME
	}
	return false
}
