//go:build !linux

package recorder

import "os"

// preallocate does nothing off Linux.
func preallocate(f *os.File, size int64) bool { return false }
