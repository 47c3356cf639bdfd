package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// damagedBackup returns a backup of a store with a few pages of users,
// families and audit events, and the page size.
func damagedBackup(t *testing.T) ([]byte, int) {
	t.Helper()
	s := openTemp(t, Options{})
	for i := range 200 {
		name := fmt.Sprintf("user%04d", i)
		if err := s.CreateUser(User{Name: name, PasswordHash: strings.Repeat("h", 60)}); err != nil {
			t.Fatal(err)
		}
		if err := s.Audit(AuditEvent{Kind: "login", User: name, Detail: strings.Repeat("d", 40)}); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	if _, err := s.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return []byte(b.String()), s.db.Info().PageSize
}

// TestCheckDamagedFiles: Check on a damaged backup (bytes flipped on any
// page, or the file cut short) returns an error, and never crashes the
// process. bbolt follows a damaged page number past the end of the memory
// map, and its consistency check does so in a goroutine of its own, where
// the fault killed `khadga restore` with "fatal error: fault" and a stack
// dump instead of "the backup is not usable, nothing was changed".
func TestCheckDamagedFiles(t *testing.T) {
	orig, pageSize := damagedBackup(t)
	dir := t.TempDir()
	if _, err := Check(write(t, dir, "good.db", orig)); err != nil {
		t.Fatalf("Check of the intact backup: %v", err)
	}
	for _, n := range []int{0, 100, pageSize, 2 * pageSize, 2*pageSize + 1, len(orig) / 2, len(orig) - pageSize} {
		path := write(t, dir, fmt.Sprintf("cut%d.db", n), orig[:n])
		_, err := Check(path)
		t.Logf("cut to %d bytes: %v", n, err)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("Check of the backup cut to %d bytes: %v, want ErrCorrupt", n, err)
		}
		if n > 2*pageSize && !strings.Contains(fmt.Sprint(err), "truncated") {
			t.Errorf("Check of the backup cut to %d bytes: %v, want it to say truncated", n, err)
		}
	}
	caught := 0
	for page := 0; page < len(orig)/pageSize; page++ {
		for _, off := range []int{0, 16, 20, 100} {
			c := append([]byte(nil), orig...)
			for j := range 8 {
				c[page*pageSize+off+j] ^= 0xA5
			}
			_, err := Check(write(t, dir, fmt.Sprintf("p%d+%d.db", page, off), c))
			if err != nil {
				caught++
			}
			if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrInvalid) {
				t.Errorf("page %d offset %d: Check: %v, want ErrCorrupt", page, off, err)
			}
		}
	}
	if caught == 0 {
		t.Error("no damage was caught")
	}
}

func write(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOpenDamagedFile: Open of a damaged store (the server's start, an
// admin command on a stopped server's file) returns an error wrapping
// ErrCorrupt that names the cure, or opens a store whose every record
// reads. bbolt's panics and faults on the damaged pages used to crash the
// server, at start or at the first request that read them.
func TestOpenDamagedFile(t *testing.T) {
	orig, pageSize := damagedBackup(t)
	dir := t.TempDir()
	for page := 0; page < len(orig)/pageSize; page++ {
		for _, off := range []int{0, 16, 20, 100} {
			c := append([]byte(nil), orig...)
			for j := range 8 {
				c[page*pageSize+off+j] ^= 0xA5
			}
			path := write(t, dir, fmt.Sprintf("p%d+%d.db", page, off), c)
			s, err := Open(path, Options{})
			if err != nil {
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "khadga restore") {
					t.Errorf("page %d offset %d: Open: %v, want ErrCorrupt and the advice to restore", page, off, err)
				}
				continue
			}
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("page %d offset %d: Open succeeded, then reading panicked: %v", page, off, r)
					}
				}()
				defer s.Close()
				s.ListUsers()
				s.ListFamilies()
				s.AuditLog(1000)
				s.SigningKeys()
			}()
		}
	}
	cut := write(t, dir, "cut.db", orig[:len(orig)/2])
	if _, err := Open(cut, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Open of a truncated store: %v, want ErrCorrupt", err)
	}
}

// TestCheckDecodesEveryRecord: a backup with a record that does not decode
// (a signing key, a family, a bot token, a room) is refused by Check, as
// one with a bad user was, instead of being installed for a server that
// then stops at start or fails a sign-in on it.
func TestCheckDecodesEveryRecord(t *testing.T) {
	for _, bucket := range [][]byte{bucketKeys, bucketFamilies, bucketBotTokens, bucketRooms} {
		t.Run(string(bucket), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "b.db")
			s, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			if _, err := Check(path); err != nil {
				t.Fatalf("Check of a fresh store: %v", err)
			}
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte("k1"), []byte("{not json")) })
			db.Close()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Check(path); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"k1" does not decode`) {
				t.Errorf("Check with a bad record in %s: %v, want ErrInvalid naming it", bucket, err)
			}
		})
	}
}
