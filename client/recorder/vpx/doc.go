// Package vpx decodes VP8 and VP9 with libvpx through cgo, and encodes them
// for tests and benchmarks. It needs cgo and libvpx (Debian: libvpx-dev to
// build, libvpx7 to run); built without cgo, every constructor returns
// ErrNoLibvpx, so the rest of khadga still builds with CGO_ENABLED=0.
package vpx

import "errors"

// ErrNoLibvpx: this binary was built without cgo, so without libvpx.
var ErrNoLibvpx = errors.New("vpx: built without libvpx (cgo disabled); rebuild with CGO_ENABLED=1 and libvpx-dev installed")

// ErrCodec: the codec name is not VP8 or VP9.
var ErrCodec = errors.New("vpx: unsupported codec")

// Codec names, as WebRTC MIME types.
const (
	VP8 = "video/VP8"
	VP9 = "video/VP9"
)

// Image is a decoded I420 picture. Its planes point into the decoder's
// memory and are valid only until the decoder's next call.
type Image struct {
	Width, Height             int
	Y, U, V                   []byte
	YStride, UStride, VStride int
}

// IsKeyFrame reports whether an encoded frame is a key frame, from its
// first bytes: the VP8 frame tag (RFC 6386 section 9.1) or the VP9
// uncompressed header (VP9 bitstream spec section 6.2).
func IsKeyFrame(codec string, frame []byte) bool {
	if len(frame) == 0 {
		return false
	}
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
