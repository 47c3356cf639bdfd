//go:build !linux

package prompt

import "os"

// readHidden shows the prompt and reads without echo (x/term).
func readHidden(f *os.File, out func(), read func(int) ([]byte, error)) (string, error) {
	out()
	b, err := read(int(f.Fd()))
	return string(b), err
}
