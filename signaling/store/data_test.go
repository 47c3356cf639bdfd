package store

import (
	"fmt"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The behaviour of every method is checked by the conformance suite
// (conformance_test.go); these tests look at bbolt's own layout.

// TestFamilyIndexFollowsFamilies: purging and deleting keep the
// user_family index in step with the families bucket.
func TestFamilyIndexFollowsFamilies(t *testing.T) {
	s := openTemp(t, Options{})
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for _, u := range []string{"ann", "bob"} {
		if err := s.CreateUser(User{Name: u}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []Family{
		{ID: "a1", User: "ann", Current: []byte("h"), Created: now, Expires: now.Add(time.Hour)},
		{ID: "a2", User: "ann", Current: []byte("h"), Created: now, Expires: now.Add(2 * time.Hour)},
		{ID: "b1", User: "bob", Current: []byte("h"), Created: now, Expires: now.Add(time.Hour)},
	} {
		if err := s.CreateFamily(f); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.PurgeExpired(now.Add(time.Hour)); err != nil || n != 2 {
		t.Fatalf("purge = %d, %v", n, err)
	}
	checkIndex(t, s, map[string]int{"ann": 1, "bob": 0})
	if _, err := s.DeleteUser("ann"); err != nil {
		t.Fatal(err)
	}
	checkIndex(t, s, map[string]int{"ann": 0})
}

func checkIndex(t *testing.T, s *Store, want map[string]int) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		for user, n := range want {
			if k := userFamilyKeys(tx, user); len(k) != n {
				return fmt.Errorf("%s index has %d keys, want %d", user, len(k), n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
