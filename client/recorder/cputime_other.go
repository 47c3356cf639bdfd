//go:build !linux

package recorder

import "time"

var clockStart = time.Now()

// threadCPU is, where the thread's CPU clock is not used, the wall time
// since the process started: the budget then meters the wall time of a
// track's work, which also counts the time its thread waited for a core.
func threadCPU() time.Duration { return time.Since(clockStart) }
