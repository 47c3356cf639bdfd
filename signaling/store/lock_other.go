//go:build windows || plan9 || solaris || aix || android

package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// lockFile holds the store at path open, which takes bbolt's lock. Here
// that reads the file: a damaged store must be moved aside by hand.
func lockFile(path string, timeout time.Duration) (unlock func(), err error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil
	}
	db, err := bolt.Open(path, fileMode, &bolt.Options{Timeout: timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("store: %s: %w (stop the server first)", path, ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("store: lock %s: %w (move the damaged store aside first)", path, damaged(err))
	}
	return func() { db.Close() }, nil
}

// syncDir does nothing where directories cannot be synced.
func syncDir(string) error { return nil }
