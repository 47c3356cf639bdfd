//go:build !linux

package recorder

import (
	"errors"
	"os"
)

// preallocate does nothing off Linux.
func preallocate(f *os.File, size int64) bool { return false }

// openDirect reports that direct I/O is not used off Linux.
func openDirect(path string) (*os.File, error) { return nil, errors.ErrUnsupported }
