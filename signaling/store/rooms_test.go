package store

import (
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// A store written by schema 1 (before room settings) opens migrated: its
// data kept, the room buckets there.
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
	s, err := Open(path, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if u, err := s.GetUser("ann"); err != nil || u.Role != "user" {
		t.Fatalf("user after migration: %+v, %v", u, err)
	}
	if _, _, err := s.SetRoom("lobby", "ann", 1, func(*Room) error { return nil }); err != nil {
		t.Fatalf("claim after migration: %v", err)
	}
}
