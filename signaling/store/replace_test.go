package store

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// backupWith writes a backup holding one user named name and returns its
// path.
func backupWith(t *testing.T, name string) string {
	t.Helper()
	s := openTemp(t, Options{})
	if err := s.CreateUser(User{Name: name}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	if err := WriteFile(path, func(w io.Writer) error { _, err := s.WriteTo(w); return err }); err != nil {
		t.Fatal(err)
	}
	return path
}

// leftovers lists the temporary files Replace may leave in dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, ".khadga-*"))
	return m
}

// TestReplaceDamagedStore: a restore over a damaged store (the usual
// reason to restore) replaces it, and keeps the damaged file beside it.
// The restore used to open the live store to take its lock, which failed
// on a damaged file ("invalid database"): the backup could not be
// restored until the operator found and deleted the store by hand.
func TestReplaceDamagedStore(t *testing.T) {
	backup := backupWith(t, "restored")
	dir := t.TempDir()
	live := filepath.Join(dir, "khadga.db")
	damage := bytes.Repeat([]byte("damaged "), 4096)
	if err := os.WriteFile(live, damage, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(live, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of the damaged store: %v, want ErrCorrupt", err)
	}
	kept, err := Replace(live, backup, 5*time.Second)
	if err != nil {
		t.Fatalf("Replace over a damaged store: %v", err)
	}
	s, err := Open(live, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetUser("restored"); err != nil {
		t.Errorf("the restored store: %v", err)
	}
	got, err := os.ReadFile(kept)
	if err != nil || !bytes.Equal(got, damage) {
		t.Errorf("the replaced store was not kept as %q: %v", kept, err)
	}
	if fi, err := os.Stat(kept); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("kept file %s: mode %v, %v; want 0600", kept, fi.Mode(), err)
	}
	if !strings.HasPrefix(filepath.Base(kept), "khadga.db.replaced-") || filepath.Dir(kept) != dir {
		t.Errorf("kept as %s, want khadga.db.replaced-TIME beside the store", kept)
	}
	if l := leftovers(t, dir); len(l) > 0 {
		t.Errorf("Replace left %v", l)
	}
	// Again: the second replaced store gets a name of its own.
	kept2, err := Replace(live, backup, 5*time.Second)
	if err == nil {
		t.Fatal("Replace of a store in use succeeded")
	}
	s.Close()
	if kept2, err = Replace(live, backup, 5*time.Second); err != nil || kept2 == kept {
		t.Fatalf("second Replace: kept %q (first %q), %v", kept2, kept, err)
	}
	if got, _ := os.ReadFile(kept); !bytes.Equal(got, damage) {
		t.Error("the second restore overwrote the first replaced store")
	}
}

// TestReplaceRefusals: a store in use, or a backup that cannot be read,
// leaves the store as it was, with nothing new beside it.
func TestReplaceRefusals(t *testing.T) {
	backup := backupWith(t, "restored")
	dir := t.TempDir()
	live := filepath.Join(dir, "khadga.db")
	s, err := Open(live, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(User{Name: "live"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Replace(live, backup, 100*time.Millisecond); !errors.Is(err, ErrInUse) {
		t.Errorf("Replace of a store in use: %v, want ErrInUse", err)
	}
	s.Close()
	if _, err := Replace(live, filepath.Join(t.TempDir(), "missing.db"), time.Second); err == nil {
		t.Error("Replace from a missing file succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the directory holds %v, want the store alone", entries)
	}
	s, err = Open(live, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetUser("live"); err != nil {
		t.Errorf("a refused Replace changed the store: %v", err)
	}
}

// TestReplaceWithoutStore: restoring into a data directory with no store
// yet (a new machine) makes the directory and the store, and keeps
// nothing.
func TestReplaceWithoutStore(t *testing.T) {
	backup := backupWith(t, "restored")
	live := filepath.Join(t.TempDir(), "data", "khadga.db")
	kept, err := Replace(live, backup, time.Second)
	if err != nil || kept != "" {
		t.Fatalf("Replace with no store: kept %q, %v", kept, err)
	}
	if fi, err := os.Stat(live); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("restored store: %v, %v; want mode 0600", fi, err)
	}
	if info, err := Check(live); err != nil || info.Users != 1 {
		t.Fatalf("restored store: %+v, %v", info, err)
	}
}

// TestSnapshot: a copy of a stopped server's store, with the file left
// as it was; a store in use is refused with ErrInUse and nothing copied.
func TestSnapshot(t *testing.T) {
	live := filepath.Join(t.TempDir(), "khadga.db")
	s, err := Open(live, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(User{Name: "ann"}); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy.db")
	if err := Snapshot(dst, live, 100*time.Millisecond); !errors.Is(err, ErrInUse) {
		t.Errorf("Snapshot of a store in use: %v, want ErrInUse", err)
	}
	if _, err := os.Stat(dst); err == nil {
		t.Error("a refused Snapshot left a copy")
	}
	s.Close()
	if err := Snapshot(dst, live, time.Second); err != nil {
		t.Fatal(err)
	}
	if info, err := Check(dst); err != nil || info.Users != 1 {
		t.Fatalf("the copy: %+v, %v", info, err)
	}
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != fileMode {
		t.Errorf("the copy's mode: %v, %v", fi.Mode(), err)
	}
}
