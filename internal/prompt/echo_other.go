//go:build !linux

package prompt

import (
	"context"
	"os"
)

// readHidden shows the prompt and reads without echo (x/term); ctx does
// not end the read here.
func readHidden(_ context.Context, f *os.File, out func(), read func(int) ([]byte, error)) (string, error) {
	out()
	b, err := read(int(f.Fd()))
	return string(b), err
}

// waitLine does not wait: only Linux ends a prompt's read on ctx.
func waitLine(context.Context, *os.File) error { return nil }
