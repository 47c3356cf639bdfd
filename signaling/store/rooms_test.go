package store

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/khadga/khadga/internal/testlog"
)

// TestNewStoreSaysCreated: a new file is created, in one line, not
// migrated from schema 0 step by step.
func TestNewStoreSaysCreated(t *testing.T) {
	var logs testlog.Buffer
	path := filepath.Join(t.TempDir(), "k.db")
	s, err := Open(path, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if want := fmt.Sprintf(`msg="store created" path=%s schema=%d`, path, SchemaVersion); !strings.Contains(logs.String(), want) || strings.Count(logs.String(), "\n") != 1 {
		t.Errorf("a new store said:\n%s\nwant one line with %s", logs.String(), want)
	}
}

// TestMigrateSchema1: a store written by schema 1 (before room settings)
// opens migrated: its data kept, the room buckets there, and says so once.
func TestMigrateSchema1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := createV1(tx); err != nil {
			return err
		}
		if err := putJSON(tx.Bucket(bucketUsers), []byte("ann"), User{Name: "ann", Role: "user"}); err != nil {
			return err
		}
		return writeVersion(tx, 1)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if info, err := Check(path); err != nil || info.Version != 1 || info.Users != 1 {
		t.Fatalf("Check of a schema 1 file = %+v, %v", info, err)
	}
	var logs testlog.Buffer
	s, err := Open(path, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if u, err := s.GetUser("ann"); err != nil || u.Role != "user" {
		t.Fatalf("user after migration: %+v, %v", u, err)
	}
	if want := fmt.Sprintf(`msg="store schema migrated" path=%s from=1 to=%d`, path, SchemaVersion); !strings.Contains(logs.String(), want) || strings.Count(logs.String(), "\n") != 1 {
		t.Errorf("the migration said:\n%s\nwant one line with %s", logs.String(), want)
	}
	if _, _, err := s.SetRoom("lobby", "ann", 1, func(*Room) error { return nil }); err != nil {
		t.Fatalf("claim after migration: %v", err)
	}
}
