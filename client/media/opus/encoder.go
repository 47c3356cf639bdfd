//go:build cgo

package opus

/*
#cgo pkg-config: opus
#include <opus.h>

static int khadga_set_bitrate(OpusEncoder *enc, opus_int32 bps) {
	return opus_encoder_ctl(enc, OPUS_SET_BITRATE(bps));
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Encoder encodes 48 kHz float32 audio to Opus packets for real-time
// use. It is not safe for concurrent use.
type Encoder struct {
	enc      *C.OpusEncoder
	channels int
	buf      []byte
}

// NewEncoder makes a 48 kHz encoder for channels channels (1 or 2) at
// bitrate bits a second (0: libopus' choice).
func NewEncoder(channels, bitrate int) (*Encoder, error) {
	var cerr C.int
	enc := C.opus_encoder_create(48000, C.int(channels), C.OPUS_APPLICATION_AUDIO, &cerr)
	if cerr != C.OPUS_OK || enc == nil {
		return nil, fmt.Errorf("opus: encoder, %d channels: %s", channels, C.GoString(C.opus_strerror(cerr)))
	}
	if bitrate > 0 {
		if r := C.khadga_set_bitrate(enc, C.opus_int32(bitrate)); r != C.OPUS_OK {
			C.opus_encoder_destroy(enc)
			return nil, fmt.Errorf("opus: bitrate %d: %s", bitrate, C.GoString(C.opus_strerror(r)))
		}
	}
	return &Encoder{enc: enc, channels: channels, buf: make([]byte, MaxPacketBytes)}, nil
}

// Encode encodes one frame of pcm (interleaved when stereo; 2.5, 5, 10,
// 20, 40 or 60 ms at 48 kHz) and returns the packet, valid until the next
// call.
func (e *Encoder) Encode(pcm []float32) ([]byte, error) {
	frame := len(pcm) / e.channels
	if frame == 0 {
		return nil, fmt.Errorf("opus: empty frame")
	}
	n := C.opus_encode_float(e.enc, (*C.float)(unsafe.Pointer(&pcm[0])), C.int(frame),
		(*C.uchar)(unsafe.Pointer(&e.buf[0])), C.opus_int32(len(e.buf)))
	if n < 0 {
		return nil, fmt.Errorf("opus: encode %d samples: %s", frame, C.GoString(C.opus_strerror(n)))
	}
	return e.buf[:n], nil
}

// Close frees the encoder.
func (e *Encoder) Close() error {
	if e.enc != nil {
		C.opus_encoder_destroy(e.enc)
		e.enc = nil
	}
	return nil
}
