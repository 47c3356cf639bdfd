//go:build !cgo

package media

import "image"

// Encoder is a VP8 encoder; without cgo it cannot be made.
type Encoder struct{}

// NewEncoder returns ErrNoLibvpx: this build has no cgo.
func NewEncoder(EncoderConfig) (*Encoder, error) { return nil, ErrNoLibvpx }

// Encode returns ErrNoLibvpx.
func (*Encoder) Encode(*image.YCbCr, bool) ([]byte, bool, error) { return nil, false, ErrNoLibvpx }

// Close does nothing.
func (*Encoder) Close() error { return nil }

// Decoder is a VP8/VP9 decoder; without cgo it cannot be made.
type Decoder struct{}

// NewDecoder returns ErrNoLibvpx: this build has no cgo.
func NewDecoder(string) (*Decoder, error) { return nil, ErrNoLibvpx }

// Decode returns ErrNoLibvpx.
func (*Decoder) Decode([]byte) (*image.YCbCr, error) { return nil, ErrNoLibvpx }

// Close does nothing.
func (*Decoder) Close() error { return nil }
