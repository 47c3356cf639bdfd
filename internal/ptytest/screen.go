//go:build linux

package ptytest

import (
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Screen is what a terminal displays, read from its controller side.
type Screen struct {
	mu      sync.Mutex
	text    strings.Builder
	changed chan struct{} // closed and replaced on each change
	done    chan struct{} // closed when the terminal side is gone
}

// Watch reads everything ctl displays until the terminal side closes.
func Watch(t testing.TB, ctl *os.File) *Screen {
	s := &Screen{changed: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		b := make([]byte, 4096)
		for {
			n, err := ctl.Read(b)
			s.mu.Lock()
			s.text.Write(b[:n])
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
			if err != nil {
				return // EIO once every terminal side is closed
			}
		}
	}()
	t.Cleanup(func() { ctl.Close(); <-s.done })
	return s
}

// String is everything displayed so far.
func (s *Screen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.text.String()
}

// Expect waits until the screen shows want (after the first `after` bytes),
// failing the test after timeout, and returns the length shown then.
func (s *Screen) Expect(t testing.TB, after int, want string, timeout time.Duration) int {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		text, changed := s.text.String(), s.changed
		s.mu.Unlock()
		if i := strings.Index(text[min(after, len(text)):], want); i >= 0 {
			return min(after, len(text)) + i + len(want)
		}
		select {
		case <-changed:
		case <-s.done:
			t.Fatalf("terminal closed before it showed %q; it showed %q", want, text)
		case <-deadline.C:
			t.Fatalf("terminal did not show %q within %v; it showed %q", want, timeout, text)
		}
	}
}

// Closed waits until the terminal side is closed and everything is read.
func (s *Screen) Closed(t testing.TB, timeout time.Duration) string {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(timeout):
		t.Fatalf("terminal still open after %v; it showed %q", timeout, s.String())
	}
	return s.String()
}
