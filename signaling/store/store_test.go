package store

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// testLogger writes store logs to t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// openTemp opens a fresh store in t.TempDir and closes it at cleanup.
func openTemp(t *testing.T, opts Options) *Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := Open(filepath.Join(t.TempDir(), "sub", "khadga.db"), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestOpenCreatesPrivateFileAndDir(t *testing.T) {
	s := openTemp(t, Options{})
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("file mode = %v, want 0600", got)
	}
	di, err := os.Stat(filepath.Dir(s.Path()))
	if err != nil {
		t.Fatal(err)
	}
	if got := di.Mode().Perm(); got != 0o700 {
		t.Errorf("dir mode = %v, want 0700", got)
	}
	if err := s.Ping(); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func TestOpenTightensLooseMode(t *testing.T) {
	s := openTemp(t, Options{})
	path := s.Path()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	fi, _ := os.Stat(path)
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("file mode after reopen = %v, want 0600", got)
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	s := openTemp(t, Options{})
	start := time.Now()
	_, err := Open(s.Path(), Options{Timeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open err = %v, want ErrInUse", err)
	}
	if el := time.Since(start); el > 20*time.Second {
		t.Errorf("second Open took %v; it should fail after its timeout", el)
	}
	if want := "store is in use by another process"; !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Errorf("error %q does not say %q", err, want)
	}
	// The first handle still works.
	if err := s.Ping(); err != nil {
		t.Errorf("Ping after failed second open: %v", err)
	}
}

func TestSchemaVersion(t *testing.T) {
	s := openTemp(t, Options{})
	var v uint64
	if err := s.db.View(func(tx *bolt.Tx) (err error) { v, err = readVersion(tx); return }); err != nil {
		t.Fatal(err)
	}
	if v != 3 || SchemaVersion != 3 || uint64(len(migrations)) != SchemaVersion {
		t.Fatalf("version = %d (SchemaVersion %d), want 3", v, SchemaVersion)
	}
	// Pretend a newer khadga wrote the file.
	if err := s.db.Update(func(tx *bolt.Tx) error { return writeVersion(tx, SchemaVersion+1) }); err != nil {
		t.Fatal(err)
	}
	path := s.Path()
	s.Close()
	_, err := Open(path, Options{})
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open newer schema err = %v, want ErrSchemaTooNew", err)
	}
}

func TestOpenRejectsNonStoreFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "junk.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a bbolt file "), 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{}); err == nil {
		t.Fatal("Open of a junk file succeeded")
	}
}

func TestCheck(t *testing.T) {
	s := openTemp(t, Options{})
	if err := s.CreateUser(User{Name: "ann"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Audit(AuditEvent{Kind: "login"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SetRoom("lobby", "ann", 1, func(*Room) error { return nil }); err != nil {
		t.Fatal(err)
	}
	// The live file is locked: Check says so instead of hanging.
	if _, err := Check(s.Path()); !errors.Is(err, ErrInUse) {
		t.Fatalf("Check of a live store err = %v, want ErrInUse", err)
	}
	var buf bytes.Buffer
	if _, err := s.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "b.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	info, err := Check(path)
	if err != nil || info.Version != SchemaVersion || info.Users != 1 || info.AuditEvents != 1 || info.Rooms != 1 ||
		info.Size != int64(buf.Len()) {
		t.Fatalf("Check = %+v, %v", info, err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(after, buf.Bytes()) {
		t.Error("Check modified the file")
	}

	missing := filepath.Join(t.TempDir(), "missing.db")
	if _, err := Check(missing); err == nil {
		t.Error("Check of a missing file succeeded")
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("Check created the missing file")
	}
	junk := filepath.Join(t.TempDir(), "junk.db")
	_ = os.WriteFile(junk, bytes.Repeat([]byte("not bbolt"), 1000), 0o600)
	if _, err := Check(junk); err == nil {
		t.Error("Check accepted junk")
	}
	// A bbolt file that is not a khadga store.
	other := filepath.Join(t.TempDir(), "other.db")
	db, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("x")); return err })
	db.Close()
	if _, err := Check(other); !errors.Is(err, ErrInvalid) {
		t.Errorf("Check of a foreign bbolt file err = %v, want ErrInvalid", err)
	}
}

// TestOpenFollowsReplacedFile: a store file replaced while Open waits for
// its lock (a restore renames the backup over the store while it holds the
// old file's lock; a server started meanwhile waits for that lock) is
// opened again at its path. Open used to get the lock of the old file
// when the restore ended and serve it: the restored store was ignored, and
// every change made went to a file that no longer had a name, lost at the
// next restart.
func TestOpenFollowsReplacedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "khadga.db")
	holder, err := Open(path, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if err := holder.CreateUser(User{Name: "old"}); err != nil {
		t.Fatal(err)
	}
	backup := openTemp(t, Options{})
	if err := backup.CreateUser(User{Name: "restored"}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := backup.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	replacement := filepath.Join(dir, "replacement.db")
	if err := os.WriteFile(replacement, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	opened := make(chan struct{}, 1)
	openFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		select {
		case opened <- struct{}{}:
		default:
		}
		return f, err
	}
	t.Cleanup(func() { openFile = os.OpenFile })
	type result struct {
		s   *Store
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := Open(path, Options{Timeout: time.Minute, Logger: testLogger(t)})
		done <- result{s, err}
	}()
	select {
	case <-opened: // it has the old file and waits for its lock
	case <-time.After(30 * time.Second):
		t.Fatal("Open did not open the file")
	}
	if err := os.Rename(replacement, path); err != nil {
		t.Fatal(err)
	}
	holder.Close()
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		t.Fatal("Open did not return after the lock was released")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.s.Close()
	if _, err := r.s.GetUser("restored"); err != nil {
		t.Errorf("the store opened is not the file at its path now (restored user: %v)", err)
	}
	if _, err := r.s.GetUser("old"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the store opened has the replaced file's user (%v)", err)
	}
}
