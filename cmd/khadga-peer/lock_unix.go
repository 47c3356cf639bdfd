//go:build unix

package main

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lockStore takes the exclusive lock on dir's tokens.lock, waiting for a
// process that holds it; the returned func lets go.
func lockStore(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "tokens.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}

// holdPart locks a partial file for as long as it stays open, so that
// another recv can tell it from one a killed process left behind.
func holdPart(f *os.File) error { return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) }

// removeAbandoned removes the partial file at path if no process holds
// its lock, and reports whether it did. It removes the file while
// holding the lock itself.
func removeAbandoned(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return false
	}
	return os.Remove(path) == nil
}
