//go:build !cgo

package opus

// Available reports whether this build has libopus: not without cgo.
func Available() bool { return false }

// Decoder is unavailable without cgo.
type Decoder struct{}

// NewDecoder returns ErrNoLibopus.
func NewDecoder(rate, channels int) (*Decoder, error) { return nil, ErrNoLibopus }

// Decode returns ErrNoLibopus.
func (d *Decoder) Decode(packet []byte, out []float32) (int, error) { return 0, ErrNoLibopus }

// Rate is 0 without cgo.
func (d *Decoder) Rate() int { return 0 }

// Close does nothing.
func (d *Decoder) Close() error { return nil }

// Encoder is unavailable without cgo.
type Encoder struct{}

// NewEncoder returns ErrNoLibopus.
func NewEncoder(channels, bitrate int) (*Encoder, error) { return nil, ErrNoLibopus }

// Encode returns ErrNoLibopus.
func (e *Encoder) Encode(pcm []float32) ([]byte, error) { return nil, ErrNoLibopus }

// Close does nothing.
func (e *Encoder) Close() error { return nil }
