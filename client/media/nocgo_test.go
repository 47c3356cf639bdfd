//go:build !cgo

package media

import (
	"errors"
	"testing"
)

func TestWithoutCgoSaysSo(t *testing.T) {
	if _, err := NewTestPattern(PatternConfig{}); !errors.Is(err, ErrNoLibvpx) {
		t.Fatalf("got %v, want ErrNoLibvpx", err)
	}
	if _, err := NewDecoder("VP8"); !errors.Is(err, ErrNoLibvpx) {
		t.Fatalf("got %v, want ErrNoLibvpx", err)
	}
}
