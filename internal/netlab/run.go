package netlab

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// A run is one test process's use of the lab. Its id (the pid, a dot and
// a random part) is in the name of every namespace the process makes, and
// the process holds an flock(2) on the run's lock file, lockDir/ID.lock,
// for as long as it lives. The kernel drops the lock when the process
// dies, however it dies, so a sweep tells a dead run's namespaces from a
// live one's by trying to take the lock. A pid could not tell them apart:
// a new process may get the pid of a killed one, and a process in another
// pid namespace that shares /run/netns has a pid that means nothing here.
// The lock means the same to every process that sees the file.
//
// Namespaces of a run whose lock file is missing are never swept: nothing
// says that their run is over.

// lockDir holds the runs' lock files. It is not /run/netns itself, where
// `ip netns` would list every file as a namespace.
var lockDir = "/run/khadga-netlab"

var run struct {
	once sync.Once
	id   string
	lock *os.File // locked, and kept open (and referenced) until the process exits
	err  error
}

// runID starts this process's run on first use and returns its id.
func runID() (string, error) {
	run.once.Do(func() { run.id, run.lock, run.err = startRun() })
	return run.id, run.err
}

func startRun() (string, *os.File, error) {
	if err := os.MkdirAll(lockDir, 0o700); err != nil {
		return "", nil, fmt.Errorf("netlab: lock directory: %w", err)
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, fmt.Errorf("netlab: run id: %w", err)
	}
	// Not a number: the sweep of older versions reads a number there as
	// a pid, and leaves anything else alone.
	id := fmt.Sprintf("%d.%x", os.Getpid(), b)
	// The file is locked under a temporary name and then renamed, so a
	// sweep (which takes the ID.lock names for runs) never finds it
	// unlocked. os.File opens it close-on-exec: no child holds the lock
	// after the process died.
	f, err := os.CreateTemp(lockDir, "new-*")
	if err != nil {
		return "", nil, fmt.Errorf("netlab: lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", nil, fmt.Errorf("netlab: lock %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), filepath.Join(lockDir, id+".lock")); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", nil, fmt.Errorf("netlab: lock file: %w", err)
	}
	return id, f, nil
}

// sweepStale removes the namespaces of runs that are over, and their lock
// files: every lock file whose lock it can take. That is never this
// process's own: an flock held through one open file conflicts with a
// lock through another, in the same process too.
func sweepStale() {
	entries, err := os.ReadDir(lockDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		path := filepath.Join(lockDir, e.Name())
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			f.Close() // a live run
			continue
		}
		// Held until the file is gone, so that no other sweep works on
		// the same run meanwhile.
		if id, ok := strings.CutSuffix(e.Name(), ".lock"); !ok || removeRun(id) {
			os.Remove(path) // a temporary name whose process died, or a run swept clean
		}
		f.Close()
	}
}

// removeRun deletes the namespaces of run id and reports whether none is
// left.
func removeRun(id string) bool {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return errors.Is(err, fs.ErrNotExist)
	}
	clean := true
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), Prefix+id+"-") {
			if err := deleteNetns(e.Name()); err != nil {
				clean = false
			}
		}
	}
	return clean
}
