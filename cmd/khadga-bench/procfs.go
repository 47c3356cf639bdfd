//go:build linux

// Figures read from /proc, and the open-file limits.

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// errNoField is returned when a /proc file lacks the field asked for.
var errNoField = errors.New("field not found")

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// rss returns the resident set size of process pid in bytes (VmRSS).
func rss(pid int) (int64, error) {
	v, err := statusField(pid, "VmRSS:")
	if err != nil {
		return 0, err
	}
	kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("VmRSS %q: %w", v, err)
	}
	return kb << 10, nil
}

func statusField(pid int, name string) (string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name); ok {
			return strings.TrimSpace(v), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("/proc/%d/status %s: %w", pid, name, errNoField)
}

// cpuSeconds returns the user plus system CPU time process pid has used.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields count from after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, errNoField)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, errNoField)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return float64(u+s) / clockTicks, nil
}

// noFileLimit returns the soft "Max open files" limit of process pid.
func noFileLimit(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			if f[0] == "unlimited" {
				return 1 << 62, nil
			}
			return strconv.ParseUint(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/limits Max open files: %w", pid, errNoField)
}

// raiseNoFile lifts this process's soft RLIMIT_NOFILE to its hard limit: the
// bench holds one socket per connection, and the servers it starts inherit
// the raised limit.
func raiseNoFile(log *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn("cannot read RLIMIT_NOFILE", slog.Any("err", err))
		return
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			log.Warn("cannot raise RLIMIT_NOFILE", slog.Any("err", err))
			return
		}
	}
	log.Debug("open file limit", slog.Uint64("soft", lim.Cur), slog.Uint64("hard", lim.Max))
}

// checkNoFile warns when process pid (the server), or this process, may open
// fewer files than the bench will hold connections.
func checkNoFile(log *slog.Logger, pid, conns int) {
	need := uint64(conns) + 256
	if pid > 0 {
		if n, err := noFileLimit(pid); err == nil && n < need {
			log.Warn("the server's open file limit is too low for this run: raise it (ulimit -n) before starting the server",
				slog.Uint64("limit", n), slog.Uint64("need", need))
		}
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < need {
		log.Warn("this process's open file limit is too low for this run; raise the hard limit (ulimit -Hn) as root",
			slog.Uint64("limit", lim.Cur), slog.Uint64("need", need))
	}
}

// procIO counts a process's read and write system calls.
type procIO struct {
	Reads, Writes int64
}

// readProcIO reads syscr and syscw from /proc/PID/io.
func readProcIO(pid int) (procIO, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return procIO{}, err
	}
	var io procIO
	var found int
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "syscr":
			io.Reads, found = n, found+1
		case "syscw":
			io.Writes, found = n, found+1
		}
	}
	if found != 2 {
		return io, fmt.Errorf("/proc/%d/io syscr, syscw: %w", pid, errNoField)
	}
	return io, nil
}
