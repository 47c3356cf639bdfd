//go:build !cgo

package vpx

// Decoder is unavailable without cgo.
type Decoder struct{}

// Codecs lists the codecs this build decodes: none without cgo.
func Codecs() []string { return nil }

// NewDecoder returns ErrNoLibvpx.
func NewDecoder(codec string) (*Decoder, error) { return nil, ErrNoLibvpx }

// Codec is empty without cgo.
func (d *Decoder) Codec() string { return "" }

// Decode returns ErrNoLibvpx.
func (d *Decoder) Decode(frame []byte) (*Image, error) { return nil, ErrNoLibvpx }

// Close does nothing.
func (d *Decoder) Close() error { return nil }

// Encoder is unavailable without cgo.
type Encoder struct{}

// NewEncoder returns ErrNoLibvpx.
func NewEncoder(EncoderConfig) (*Encoder, error) { return nil, ErrNoLibvpx }

// Encode returns ErrNoLibvpx.
func (e *Encoder) Encode(*Image, bool) ([]byte, bool, error) { return nil, false, ErrNoLibvpx }

// Close does nothing.
func (e *Encoder) Close() error { return nil }
