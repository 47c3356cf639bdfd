package admin_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/khadga/khadga/signaling/admin"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/store"
)

// TestBackupFailureSaysWhy: a backup the server cannot write fails on the
// command line with the server's reason. The client dropped it and said
// only "admin socket: backup: 500 Internal Server Error", which gives an
// operator whose nightly backup fails nothing to go on.
func TestBackupFailureSaysWhy(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "khadga.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.NewKeys(st, auth.KeysOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ops := &admin.Ops{Store: st, Keys: keys, Bots: auth.NewBots(st, keys, auth.BotsOptions{})}
	ln, err := admin.Listen(filepath.Join(dir, "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: admin.Handler(ops)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	c, err := admin.Dial(filepath.Join(dir, "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if n, err := c.Backup(context.Background(), &buf); err != nil || n == 0 {
		t.Fatalf("backup: %d bytes, %v", n, err)
	}
	st.Close() // the store fails every read from now on
	buf.Reset()
	_, err = c.Backup(context.Background(), &buf)
	if err == nil || !strings.Contains(err.Error(), "store: backup") || buf.Len() != 0 {
		t.Fatalf("backup of a closed store: %v (%d bytes written); want the server's reason and nothing written", err, buf.Len())
	}
}
