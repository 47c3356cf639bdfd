package recorder

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// processCPU is the CPU time of the whole process: every goroutine, the
// writer and the garbage collector included.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuTimer measures the CPU time of a benchmark loop on one thread.
type cpuTimer struct{ start time.Duration }

func startCPU(b *testing.B) *cpuTimer {
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
	return &cpuTimer{start: threadCPU()}
}

// report adds cpu-ns/op and, if framesPerOp > 0, cpu-frames/s.
func (c *cpuTimer) report(b *testing.B, framesPerOp float64) float64 {
	d := threadCPU() - c.start
	perOp := float64(d.Nanoseconds()) / float64(b.N)
	b.ReportMetric(perOp, "cpu-ns/op")
	fps := 0.0
	if framesPerOp > 0 && perOp > 0 {
		fps = framesPerOp / (perOp / 1e9)
		b.ReportMetric(fps, "cpu-frames/s")
	}
	return fps
}
