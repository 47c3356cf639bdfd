// Package media provides video for khadga peers: a VP8 encoder and a VP8/VP9
// decoder on libvpx (through cgo), and a synthetic test-pattern source whose
// frames carry their own counter so that a receiver can check frame order
// and loss.
//
// The libvpx code builds only with cgo (files with the cgo build
// constraint). Built with CGO_ENABLED=0, the package still compiles: the
// pattern drawing and counter reading work, and NewEncoder, NewDecoder and
// NewTestPattern return ErrNoLibvpx.
package media

import (
	"errors"
	"fmt"
)

// ErrNoLibvpx: the program was built without cgo, so libvpx is not linked.
var ErrNoLibvpx = errors.New("media: built without libvpx (cgo disabled); rebuild with CGO_ENABLED=1 and libvpx-dev installed")

// Codec names accepted by NewDecoder (MIME types as pion names them, or
// the bare codec name).
const (
	MimeTypeVP8 = "video/VP8"
	MimeTypeVP9 = "video/VP9"
)

// EncoderConfig configures a VP8 encoder.
type EncoderConfig struct {
	Width, Height int
	// FPS is the frame rate the rate control assumes (default 30).
	FPS int
	// BitrateKbps is the target bitrate (default 800).
	BitrateKbps int
	// KeyframeInterval is the largest distance between key frames, in
	// frames (default 2 seconds' worth).
	KeyframeInterval int
}

func (c *EncoderConfig) defaults() error {
	if c.Width <= 0 || c.Height <= 0 || c.Width > 4096 || c.Height > 4096 || c.Width%2 != 0 || c.Height%2 != 0 {
		return errors.New("media: width and height must be even and between 2 and 4096")
	}
	if c.FPS <= 0 {
		c.FPS = 30
	}
	if c.BitrateKbps <= 0 {
		c.BitrateKbps = 800
	}
	if c.KeyframeInterval <= 0 {
		c.KeyframeInterval = 2 * c.FPS
	}
	return nil
}

// MaxDimension caps the width and height of a VP8 picture the decoder
// accepts: a key frame declares its size, and libvpx would allocate for a
// forged 16383x16383 before finding out the rest is garbage.
const MaxDimension = 4096

// checkVP8Size reads a VP8 key frame's declared size (RFC 6386, 9.1) and
// refuses pictures over MaxDimension. Inter frames carry no size.
func checkVP8Size(frame []byte) error {
	if frame[0]&1 != 0 {
		return nil // inter frame
	}
	if len(frame) < 10 || frame[3] != 0x9d || frame[4] != 0x01 || frame[5] != 0x2a {
		return errors.New("media: VP8 key frame without a valid start code")
	}
	w := int(frame[6]) | int(frame[7]&0x3f)<<8
	h := int(frame[8]) | int(frame[9]&0x3f)<<8
	if w == 0 || h == 0 || w > MaxDimension || h > MaxDimension {
		return fmt.Errorf("media: VP8 key frame of %dx%d: limit %dx%d", w, h, MaxDimension, MaxDimension)
	}
	return nil
}
