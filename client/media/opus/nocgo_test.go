//go:build !cgo

package opus

import (
	"errors"
	"testing"
)

// TestNoLibopus: without cgo every constructor says what is missing.
func TestNoLibopus(t *testing.T) {
	if _, err := NewDecoder(16000, 1); !errors.Is(err, ErrNoLibopus) {
		t.Errorf("NewDecoder: %v", err)
	}
	if _, err := NewTone(ToneConfig{}); !errors.Is(err, ErrNoLibopus) {
		t.Errorf("NewTone: %v", err)
	}
	if Available() {
		t.Error("Available without cgo")
	}
}
