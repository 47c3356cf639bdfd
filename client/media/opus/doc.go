// Package opus is khadga's binding of libopus: decoding the Opus audio
// that peers send the recorder, straight to 16 kHz mono float32 (libopus
// resamples and downmixes inside its decoder), and encoding, for the test
// tone a Go peer sends (ToneSource). It is the only package with cgo for
// audio, like client/media/vpx for video.
//
// It needs cgo and libopus (Debian: libopus-dev and pkg-config to build,
// libopus0 to run). Built without cgo (the cgo build constraint leaves the
// binding out), every constructor returns ErrNoLibopus and Available
// reports false, so everything else builds with CGO_ENABLED=0.
//
// A remote sender controls what the decoder gets, so Decode refuses a
// packet over MaxPacketBytes, and the output buffer bounds what a packet
// may decode to (at most 120 ms, as RFC 6716 allows).
package opus

import (
	"errors"
	"time"
)

// ErrNoLibopus: this binary was built without cgo, so without libopus.
var ErrNoLibopus = errors.New("opus: built without libopus (cgo disabled); rebuild with CGO_ENABLED=1 and libopus-dev installed")

// ErrPacket: libopus refused a packet (corrupt, or larger than the output).
var ErrPacket = errors.New("opus: packet not decoded")

// MimeType is Opus as WebRTC names it.
const MimeType = "audio/opus"

// Limits and formats.
const (
	// MaxPacketBytes caps one packet handed to the decoder: an RTP packet
	// fits a path MTU; libopus' own limit per frame is 1275 bytes.
	MaxPacketBytes = 1500
	// MaxPacketDuration is the longest a packet can last (RFC 6716 3.2.5).
	MaxPacketDuration = 120 * time.Millisecond
	// RTPClockRate is Opus' RTP clock, whatever the sampling rate.
	RTPClockRate = 48000
)

// MaxSamples is how many samples per channel one packet can decode to at
// rate Hz: the buffer Decode needs.
func MaxSamples(rate int) int { return rate * int(MaxPacketDuration/time.Millisecond) / 1000 }
