// Package media provides video for khadga peers: a decoder that hands out
// pictures as image.YCbCr, and a synthetic test-pattern source whose frames
// carry their own counter so that a receiver can check frame order and
// loss. Both run on the libvpx binding in client/media/vpx, the one place
// with cgo for the codec.
//
// Built with CGO_ENABLED=0, the package still compiles: the pattern
// drawing and counter reading work, and NewDecoder and NewTestPattern
// return vpx.ErrNoLibvpx.
package media

// Codec names accepted by NewDecoder (MIME types as pion names them, or
// the bare codec name).
const (
	MimeTypeVP8 = "video/VP8"
	MimeTypeVP9 = "video/VP9"
)
