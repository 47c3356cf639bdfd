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
