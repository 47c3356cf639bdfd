//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRecvRemovesAbandonedPartials: recv removes the partial file a
// killed receive left (unlocked, over a minute old) and keeps a live
// transfer's (locked), one just created (its lock may be on the way) and
// files of other names.
func TestRecvRemovesAbandonedPartials(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-2 * partMinAge)
	mk := func(name string, mtime time.Time) *os.File {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		if err := os.Chtimes(f.Name(), mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return f
	}
	mk(".khadga-killed.part", old)
	if err := holdPart(mk(".khadga-live.part", old)); err != nil {
		t.Fatal(err)
	}
	mk(".khadga-new.part", time.Now())
	mk("notes.part", old)

	var said strings.Builder
	removeLeftovers(&said, dir)
	for name, want := range map[string]bool{".khadga-killed.part": false, ".khadga-live.part": true, ".khadga-new.part": true, "notes.part": true} {
		if _, err := os.Stat(filepath.Join(dir, name)); (err == nil) != want {
			t.Errorf("%s: stat %v, want kept=%v", name, err, want)
		}
	}
	if want := "removed " + filepath.Join(dir, ".khadga-killed.part") + ", left by a receive that was stopped\n"; said.String() != want {
		t.Errorf("recv said %q, want %q", said.String(), want)
	}
}
