package storetest

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/store"
)

func testUsers(t *testing.T, c Config) {
	s, _ := open(t, c, Limits{})
	created := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	ann := store.User{Name: "ann", PasswordHash: "$argon2id$x", Role: "admin", Rooms: []string{"r1"}, Created: created,
		TOTP:  &store.TOTP{Secret: "JBSWY3DP", Enabled: true, LastStep: 7, Recovery: [][]byte{[]byte("r")}},
		Email: "ann@example.org", EmailVerified: true}
	if err := s.CreateUser(ann); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(store.User{Name: "ann", Role: "user"}); !errors.Is(err, store.ErrUserExists) {
		t.Fatalf("duplicate CreateUser err = %v, want ErrUserExists", err)
	}
	got, err := s.GetUser("ann")
	if err != nil || got.PasswordHash != ann.PasswordHash || got.Role != "admin" || !got.Created.Equal(created) ||
		len(got.Rooms) != 1 || got.TOTP == nil || got.TOTP.LastStep != 7 || !got.EmailVerified {
		t.Fatalf("GetUser = %+v, %v", got, err)
	}
	if _, err := s.GetUser("nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetUser missing err = %v", err)
	}
	mustCreateUsers(t, s, "bob")
	if b, _ := s.GetUser("bob"); b.Created.IsZero() {
		t.Error("zero Created was not filled in")
	}
	testUpdateUser(t, s)
	users, err := s.ListUsers()
	if err != nil || len(users) != 2 || users[0].Name != "ann" || users[1].Name != "bob" {
		t.Fatalf("ListUsers = %+v, %v", users, err)
	}
	if _, err := s.DeleteUser("ann"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteUser("ann"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteUser err = %v", err)
	}
	if _, err := s.GetUser("ann"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetUser after delete err = %v", err)
	}
	if users, _ := s.ListUsers(); len(users) != 1 {
		t.Errorf("ListUsers after delete = %+v", users)
	}
	// The name is free again, for a new account with nothing of the old.
	if err := s.CreateUser(store.User{Name: "ann", Role: "user"}); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.GetUser("ann"); u.TOTP != nil || u.Role != "user" {
		t.Errorf("recreated user kept old state: %+v", u)
	}
}

// testUpdateUser covers UpdateUser on bob: a write, a refused write, a
// rename and a missing user.
func testUpdateUser(t *testing.T, s store.Backend) {
	t.Helper()
	if err := s.UpdateUser("bob", func(u *store.User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.GetUser("bob"); !b.Disabled {
		t.Error("UpdateUser did not persist")
	}
	boom := errors.New("boom")
	if err := s.UpdateUser("bob", func(u *store.User) error { u.Role = "admin"; return boom }); !errors.Is(err, boom) {
		t.Fatalf("UpdateUser fn error = %v, want boom", err)
	}
	if b, _ := s.GetUser("bob"); b.Role != "user" {
		t.Error("failed UpdateUser wrote its change")
	}
	if err := s.UpdateUser("bob", func(u *store.User) error { u.Name = "eve"; return nil }); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("rename via UpdateUser err = %v, want ErrInvalid", err)
	}
	if err := s.UpdateUser("nobody", func(*store.User) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateUser missing err = %v", err)
	}
}

// testUserNames: names are bytes to the store; every one of them, with
// characters that mean something in NATS subjects or KV keys, is its own
// record. Bad names are refused.
func testUserNames(t *testing.T, c Config) {
	s, _ := open(t, c, Limits{})
	names := []string{"a.b", "a..b", ".lead", "trail.", "a b", "a*b", "a>b", ">", "*", "a/b", "a=2Eb", "=", "a_b", "a-b",
		"ünï", "日本", "A", "a", "x\ty", strings.Repeat("é", store.MaxNameLen/2)}
	mustCreateUsers(t, s, names...)
	for _, n := range names {
		if u, err := s.GetUser(n); err != nil || u.Name != n {
			t.Errorf("GetUser(%q) = %q, %v", n, u.Name, err)
		}
	}
	users, err := s.ListUsers()
	if err != nil || len(users) != len(names) {
		t.Fatalf("ListUsers = %d users, %v; want %d", len(users), err, len(names))
	}
	for i := 1; i < len(users); i++ {
		if users[i-1].Name >= users[i].Name {
			t.Fatalf("ListUsers not sorted by name: %q before %q", users[i-1].Name, users[i].Name)
		}
	}
	if _, err := s.DeleteUser("a.b"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUser("a=2Eb"); err != nil {
		t.Errorf("deleting a.b touched a=2Eb: %v", err)
	}
	for _, name := range []string{"", "a\x00b", string(bytes.Repeat([]byte("x"), store.MaxNameLen+1))} {
		if err := s.CreateUser(store.User{Name: name}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("CreateUser(%q) err = %v, want ErrInvalid", name, err)
		}
	}
}

// testUpdateUserRetried: concurrent read-modify-writes of one user, from
// several goroutines and, where the backend allows, two nodes, all land:
// conflicts are retried, none is lost.
func testUpdateUserRetried(t *testing.T, c Config) {
	s, o := open(t, c, Limits{})
	nodes := []store.Backend{s}
	if c.Nodes {
		nodes = append(nodes, o(t, Limits{}))
	}
	if err := s.CreateUser(store.User{Name: "ann", TOTP: &store.TOTP{}}); err != nil {
		t.Fatal(err)
	}
	const workers, each = 6, 8
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			st := nodes[w%len(nodes)]
			for range each {
				err := st.UpdateUser("ann", func(u *store.User) error { u.TOTP.LastStep++; return nil })
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	u, err := s.GetUser("ann")
	if err != nil || u.TOTP.LastStep != workers*each {
		t.Fatalf("after %d concurrent increments LastStep = %d, %v", workers*each, u.TOTP.LastStep, err)
	}
}
