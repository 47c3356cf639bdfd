package admin_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/khadga/khadga/signaling/admin"
)

// The admin socket is 0600 from the moment it has its name (it is bound
// in a private directory and moved there), leaves nothing else behind,
// refuses a second server, and is gone once closed.
func TestListenPrivateSocket(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil { // a directory others may enter
		t.Fatal(err)
	}
	path := filepath.Join(dir, "admin.sock")
	ln, err := admin.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, %v: want a socket with mode 0600", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the directory holds %d entries, want the socket only", len(entries))
	}
	if _, err := admin.Listen(path); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a second Listen: %v, want in use", err)
	}
	if _, err := admin.Dial(path); err != nil { // connects once to check
		t.Fatalf("dial the socket: %v", err)
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the socket file is still there after Close: %v", err)
	}
}
