//go:build cgo

package opus

/*
#cgo pkg-config: opus
#include <opus.h>
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Available reports whether this build has libopus.
func Available() bool { return true }

// Decoder decodes one Opus stream, in order, to float32 samples at its
// rate and channel count. It is not safe for concurrent use.
type Decoder struct {
	dec      *C.OpusDecoder
	rate     int
	channels int
}

// NewDecoder makes a decoder whose output is rate Hz (8000, 12000, 16000,
// 24000 or 48000) with channels channels (1 or 2): libopus resamples and
// mixes whatever the sender encoded.
func NewDecoder(rate, channels int) (*Decoder, error) {
	var cerr C.int
	dec := C.opus_decoder_create(C.opus_int32(rate), C.int(channels), &cerr)
	if cerr != C.OPUS_OK || dec == nil {
		return nil, fmt.Errorf("opus: decoder at %d Hz, %d channels: %s", rate, channels, C.GoString(C.opus_strerror(cerr)))
	}
	return &Decoder{dec: dec, rate: rate, channels: channels}, nil
}

// Decode decodes one packet into out (interleaved when stereo) and
// returns the samples per channel written. out must hold the packet's
// samples: MaxSamples(rate)*channels always does. A nil packet asks for
// packet loss concealment: libopus makes up len(out)/channels samples
// (a multiple of 2.5 ms) that follow on from the last packet.
func (d *Decoder) Decode(packet []byte, out []float32) (int, error) {
	if len(packet) > MaxPacketBytes {
		return 0, fmt.Errorf("%w: %d bytes, at most %d", ErrPacket, len(packet), MaxPacketBytes)
	}
	frame := len(out) / d.channels
	if frame == 0 {
		return 0, fmt.Errorf("%w: no room for output", ErrPacket)
	}
	var data *C.uchar
	if len(packet) > 0 {
		data = (*C.uchar)(unsafe.Pointer(&packet[0]))
	}
	n := C.opus_decode_float(d.dec, data, C.opus_int32(len(packet)), (*C.float)(unsafe.Pointer(&out[0])), C.int(frame), 0)
	if n < 0 {
		return 0, fmt.Errorf("%w: %s", ErrPacket, C.GoString(C.opus_strerror(n)))
	}
	return int(n), nil
}

// Rate is the output sampling rate.
func (d *Decoder) Rate() int { return d.rate }

// Close frees the decoder.
func (d *Decoder) Close() error {
	if d.dec != nil {
		C.opus_decoder_destroy(d.dec)
		d.dec = nil
	}
	return nil
}
