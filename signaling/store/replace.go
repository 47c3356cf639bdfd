package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Replace replaces the store file at path with a copy of the file at from
// (a backup that Check accepted), for `khadga restore`, and returns where
// it kept the file it replaced ("" if there was none).
//
// It takes the store's lock without reading the store, so a damaged store
// (the usual reason to restore) is replaced like any other, and it fails
// with ErrInUse while a server holds the store after timeout. The copy is
// written beside the store, synced, and renamed over it, so a failure (a
// full disk, a bad read) leaves the store as it was, and a crash leaves
// either store whole. The replaced file stays in the same directory as
// khadga.db.replaced-TIME (mode 0600: it holds the same secrets), so a
// restore of the wrong backup loses nothing; delete it when the restore is
// good. An error means the store was not replaced, unless it says so.
func Replace(path, from string, timeout time.Duration) (kept string, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("store: create directory: %w", err)
	}
	unlock, err := lockFile(path, timeout)
	if err != nil {
		return "", err
	}
	defer unlock()
	in, err := os.Open(from)
	if err != nil {
		return "", fmt.Errorf("store: replace: %w", err)
	}
	defer in.Close()
	tmp, err := writeTemp(filepath.Dir(path), ".khadga-restore-*", func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("store: replace: writing the copy beside %s: %w", path, err)
	}
	defer os.Remove(tmp) // after the rename, there is nothing left to remove
	if kept, err = keep(path); err != nil {
		return "", fmt.Errorf("store: replace: keeping the replaced store: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		if kept != "" {
			os.Remove(kept)
		}
		return "", fmt.Errorf("store: replace: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return kept, fmt.Errorf("store: replace: the store was replaced, but a crash now may undo it: %w", err)
	}
	return kept, nil
}

// Snapshot copies the store file at path to dst (mode 0600, written
// through WriteFile), holding the store's lock meanwhile so that no
// server changes it during the copy: it fails with ErrInUse while a
// server holds the store after timeout. It never opens the store, so the
// file stays exactly as it was (Open would migrate an older schema in
// place, which an older khadga then refuses), for `khadga migrate`, which
// opens the copy.
func Snapshot(dst, path string, timeout time.Duration) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	unlock, err := lockFile(path, timeout)
	if err != nil {
		return err
	}
	defer unlock()
	in, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer in.Close()
	if err := WriteFile(dst, func(w io.Writer) error { _, err := io.Copy(w, in); return err }); err != nil {
		return fmt.Errorf("store: copying %s: %w", path, err)
	}
	return nil
}

// keep links the store at path to a name of its own beside it, mode
// 0600, and returns that name; "" when there is no store at path.
func keep(path string) (string, error) {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	base := path + ".replaced-" + time.Now().UTC().Format("20060102T150405Z")
	for i := 0; ; i++ {
		kept := base
		if i > 0 {
			kept = fmt.Sprintf("%s-%d", base, i)
		}
		err := os.Link(path, kept)
		if errors.Is(err, fs.ErrExist) && i < 100 {
			continue
		}
		if err != nil { // a file system without hard links: copy it
			in, oerr := os.Open(path)
			if oerr != nil {
				return "", errors.Join(err, oerr)
			}
			defer in.Close()
			tmp, cerr := writeTemp(filepath.Dir(path), ".khadga-replaced-*", func(w io.Writer) error {
				_, err := io.Copy(w, in)
				return err
			})
			if cerr != nil {
				return "", errors.Join(err, cerr)
			}
			if err := os.Rename(tmp, kept); err != nil {
				os.Remove(tmp)
				return "", err
			}
		}
		return kept, os.Chmod(kept, fileMode)
	}
}

// WriteFile writes a file of mode 0600 at path through write, durably: to
// a temporary file beside it, synced and renamed into place, with the
// directory synced too. A failure never leaves a truncated file at path,
// and a crash leaves the old file or the new one. For backups, which hold
// password hashes and secrets.
func WriteFile(path string, write func(io.Writer) error) error {
	tmp, err := writeTemp(filepath.Dir(path), ".khadga-backup-*", write)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// writeTemp writes a new file of mode 0600 in dir through write and syncs
// it, returning its name; on failure it removes it.
func writeTemp(dir, pattern string, write func(io.Writer) error) (name string, err error) {
	f, err := os.CreateTemp(dir, pattern) // 0600
	if err != nil {
		return "", err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(fileMode); err != nil {
		return "", err
	}
	if err := write(f); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	return f.Name(), nil
}
