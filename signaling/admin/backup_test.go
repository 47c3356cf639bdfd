package admin_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/admin"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/store"
)

// TestBackupFailureSaysWhy: a backup the server cannot write fails on the
// command line with the server's reason. The client dropped it and said
// only "admin socket: backup: 500 Internal Server Error", which gives an
// operator whose nightly backup fails nothing to go on.
func TestBackupFailureSaysWhy(t *testing.T) {
	st, ops := storeOps(t)
	c := serveAdmin(t, ops)
	var buf bytes.Buffer
	if n, err := c.Backup(context.Background(), &buf); err != nil || n == 0 {
		t.Fatalf("backup: %d bytes, %v", n, err)
	}
	st.Close() // the store fails every read from now on
	buf.Reset()
	_, err := c.Backup(context.Background(), &buf)
	if err == nil || !strings.Contains(err.Error(), "store: backup") || buf.Len() != 0 {
		t.Fatalf("backup of a closed store: %v (%d bytes written); want the server's reason and nothing written", err, buf.Len())
	}
}

// failingBackup is the real operations, with a backup that fails after
// its first bytes (a disk error in the middle of a large store, say).
type failingBackup struct{ *admin.Ops }

func (f failingBackup) Backup(ctx context.Context, w io.Writer) (int64, error) {
	var buf bytes.Buffer
	if _, err := f.Ops.Backup(ctx, &buf); err != nil {
		return 0, err
	}
	n, _ := w.Write(buf.Bytes()[:buf.Len()/2])
	return int64(n), errors.New("read error in the middle")
}

// TestBackupStreamedFailureIsAnError: the admin socket streams a backup
// (a large store costs the server no memory), and one that fails after
// its first bytes is an error on the command line, never a shorter file
// taken for a whole one.
func TestBackupStreamedFailureIsAnError(t *testing.T) {
	st, ops := storeOps(t)
	t.Cleanup(func() { st.Close() })
	c := serveAdmin(t, failingBackup{ops})
	var buf bytes.Buffer
	n, err := c.Backup(context.Background(), &buf)
	if err == nil {
		t.Fatalf("a backup cut short after %d bytes was taken for a whole one", n)
	}
	t.Logf("backup cut short after %d bytes: %v", n, err)
}

// storeOps opens a store in a temporary directory and the operations on it.
func storeOps(t *testing.T) (*store.Store, *admin.Ops) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "khadga.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.NewKeys(st, auth.KeysOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return st, &admin.Ops{Store: st, Keys: keys, Bots: auth.NewBots(st, keys, auth.BotsOptions{})}
}

// serveAdmin serves a on an admin socket until the test ends, and dials it.
func serveAdmin(t *testing.T, a admin.Admin) *admin.Client {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := admin.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: admin.Handler(a)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	c, err := admin.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestBackupClientThatStopsReadingBlocksNoWrite: the admin socket streams
// a backup, and its client may read slowly or stop (`khadga backup -`
// piped into an ssh that stalled). The store wrote the backup to the
// socket from inside a bbolt read transaction, and bbolt cannot grow its
// memory map while one is open: the first write that grew the file waited
// for the backup's client, and every transaction after it (sign-ins,
// WebSocket upgrades, joins that read a room's settings, Close) waited for
// that write. The backup is now copied beside the store first, and the
// client reads the copy with no transaction open.
func TestBackupClientThatStopsReadingBlocksNoWrite(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "khadga.db"), store.Options{NoSync: true}) // thousands of writes below
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// More than the socket's buffers hold, so that the server's writes
	// wait for the client while it does not read.
	if err := padStore(st, 2<<20); err != nil {
		t.Fatal(err)
	}
	c := serveAdmin(t, &admin.Ops{Store: st})
	w := &stalledWriter{first: make(chan struct{}), release: make(chan struct{})}
	defer close(w.release)
	go func() { _, _ = c.Backup(context.Background(), w) }()
	select {
	case <-w.first: // the server is sending: it stays stuck until w is released
	case <-time.After(10 * time.Second):
		t.Fatal("the backup's first bytes never came")
	}
	// Grow the file well past its memory map: at twice its size at most.
	grown := make(chan error, 1)
	go func() { grown <- padStore(st, 8<<20) }()
	select {
	case err := <-grown:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("store writes waited for a backup client that stopped reading")
	}
}

// padStore adds about n bytes of audit events to st.
func padStore(st *store.Store, n int) error {
	detail := strings.Repeat("x", 2000)
	for range n / len(detail) {
		if err := st.Audit(store.AuditEvent{Kind: "pad", Detail: detail}); err != nil {
			return err
		}
	}
	return nil
}

// stalledWriter is where a backup client copies to: it takes the first
// write, then blocks until release is closed, as a pipe whose reader
// stopped does.
type stalledWriter struct {
	first, release chan struct{}
	once           sync.Once
}

func (w *stalledWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.first) })
	<-w.release
	return len(p), nil
}
