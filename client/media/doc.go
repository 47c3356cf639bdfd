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

import "errors"

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
