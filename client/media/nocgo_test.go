//go:build !cgo

package media

import (
	"errors"
	"github.com/khadga/khadga/client/media/vpx"
	"testing"
)

func TestWithoutCgoSaysSo(t *testing.T) {
	if _, err := NewTestPattern(PatternConfig{}); !errors.Is(err, vpx.ErrNoLibvpx) {
		t.Fatalf("got %v, want ErrNoLibvpx", err)
	}
	if _, err := NewDecoder("VP8"); !errors.Is(err, vpx.ErrNoLibvpx) {
		t.Fatalf("got %v, want ErrNoLibvpx", err)
	}
}
