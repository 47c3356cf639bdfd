//go:build !cgo

package vpx

import (
	"errors"
	"testing"
)

func TestWithoutCgoSaysSo(t *testing.T) {
	if _, err := NewDecoder(VP8); !errors.Is(err, ErrNoLibvpx) {
		t.Errorf("NewDecoder: %v, want ErrNoLibvpx", err)
	}
	if _, err := NewEncoder(EncoderConfig{Width: 64, Height: 48}); !errors.Is(err, ErrNoLibvpx) {
		t.Errorf("NewEncoder: %v, want ErrNoLibvpx", err)
	}
	if len(Codecs()) != 0 {
		t.Errorf("Codecs() = %v without libvpx", Codecs())
	}
}
