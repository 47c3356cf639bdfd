package store

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestUsers(t *testing.T) {
	s := openTemp(t, Options{})
	created := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	ann := User{Name: "ann", PasswordHash: "$argon2id$x", Role: "admin", Rooms: []string{"r1"}, Created: created}
	if err := s.CreateUser(ann); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(User{Name: "ann", Role: "user"}); !errors.Is(err, ErrUserExists) {
		t.Fatalf("duplicate CreateUser err = %v, want ErrUserExists", err)
	}
	got, err := s.GetUser("ann")
	if err != nil || got.PasswordHash != ann.PasswordHash || got.Role != "admin" ||
		!got.Created.Equal(created) || len(got.Rooms) != 1 {
		t.Fatalf("GetUser = %+v, %v", got, err)
	}
	if _, err := s.GetUser("nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetUser missing err = %v", err)
	}
	if err := s.CreateUser(User{Name: "bob", Role: "user"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.GetUser("bob"); b.Created.IsZero() {
		t.Error("zero Created was not filled in")
	}

	if err := s.UpdateUser("bob", func(u *User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.GetUser("bob"); !b.Disabled {
		t.Error("UpdateUser did not persist")
	}
	boom := errors.New("boom")
	err = s.UpdateUser("bob", func(u *User) error { u.Role = "admin"; return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("UpdateUser fn error = %v, want boom", err)
	}
	if b, _ := s.GetUser("bob"); b.Role != "user" {
		t.Error("failed UpdateUser wrote its change")
	}
	if err := s.UpdateUser("bob", func(u *User) error { u.Name = "eve"; return nil }); !errors.Is(err, ErrInvalid) {
		t.Errorf("rename via UpdateUser err = %v, want ErrInvalid", err)
	}
	if err := s.UpdateUser("nobody", func(*User) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateUser missing err = %v", err)
	}

	users, err := s.ListUsers()
	if err != nil || len(users) != 2 || users[0].Name != "ann" || users[1].Name != "bob" {
		t.Fatalf("ListUsers = %+v, %v", users, err)
	}
	if err := s.DeleteUser("ann"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser("ann"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteUser err = %v", err)
	}
	if _, err := s.GetUser("ann"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetUser after delete err = %v", err)
	}
}

func TestUserNameValidation(t *testing.T) {
	s := openTemp(t, Options{})
	for _, name := range []string{"", "a\x00b", string(bytes.Repeat([]byte("x"), MaxNameLen+1))} {
		if err := s.CreateUser(User{Name: name}); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateUser(%q) err = %v, want ErrInvalid", name, err)
		}
	}
}

func newFamily(id, user string, now time.Time) Family {
	return Family{ID: id, User: user, Current: []byte("h0"), Created: now, Expires: now.Add(time.Hour)}
}

func TestFamilyRotation(t *testing.T) {
	s := openTemp(t, Options{})
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	if err := s.CreateFamily(newFamily("f1", "ann", now)); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateFamily(newFamily("f1", "ann", now)); !errors.Is(err, ErrFamilyExists) {
		t.Fatalf("duplicate family err = %v", err)
	}
	f, err := s.RotateFamily("f1", []byte("h0"), []byte("h1"), now)
	if err != nil || f.Generation != 1 || string(f.Current) != "h1" {
		t.Fatalf("rotate = %+v, %v", f, err)
	}
	f, err = s.RotateFamily("f1", []byte("h1"), []byte("h2"), now)
	if err != nil || f.Generation != 2 {
		t.Fatalf("second rotate = %+v, %v", f, err)
	}
	if _, err := s.RotateFamily("nope", []byte("h0"), []byte("h1"), now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown family err = %v", err)
	}

	// Replaying h1 (already rotated away) is reuse: the family dies.
	f, err = s.RotateFamily("f1", []byte("h1"), []byte("hx"), now)
	if !errors.Is(err, ErrTokenReuse) || f.User != "ann" {
		t.Fatalf("reuse = %+v, %v; want ErrTokenReuse with the family", f, err)
	}
	// Even the legitimate newest secret no longer works.
	if _, err := s.RotateFamily("f1", []byte("h2"), []byte("h3"), now); !errors.Is(err, ErrRevoked) {
		t.Fatalf("rotate after reuse err = %v, want ErrRevoked", err)
	}
	if got, _ := s.GetFamily("f1"); !got.Revoked || string(got.Current) != "h2" {
		t.Fatalf("family after reuse = %+v", got)
	}
}

func TestFamilyExpiryRevokeAndPurge(t *testing.T) {
	s := openTemp(t, Options{})
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for _, f := range []Family{newFamily("a1", "ann", now), newFamily("a2", "ann", now.Add(time.Second)),
		newFamily("b1", "bob", now)} {
		if err := s.CreateFamily(f); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RotateFamily("b1", []byte("h0"), []byte("h1"), now.Add(time.Hour)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("rotate at expiry err = %v, want ErrRevoked", err)
	}
	if err := s.RevokeFamily("b1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeFamily("zz"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown err = %v", err)
	}
	if err := s.RevokeUserFamilies("ann"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a1", "a2", "b1"} {
		if _, err := s.RotateFamily(id, []byte("h0"), []byte("h1"), now); !errors.Is(err, ErrRevoked) {
			t.Errorf("rotate revoked %s err = %v", id, err)
		}
	}
	n, err := s.PurgeExpired(now.Add(time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("purge = %d, %v; want 2 (a1, b1)", n, err)
	}
	if _, err := s.GetFamily("a1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a1 survived purge: %v", err)
	}
	if _, err := s.GetFamily("a2"); err != nil {
		t.Errorf("a2 purged too early: %v", err)
	}
	// The index entries went too: ann has exactly one family left.
	if err := s.db.View(func(tx *bolt.Tx) error {
		if k := userFamilyKeys(tx, "ann"); len(k) != 1 {
			return fmt.Errorf("ann index has %d keys", len(k))
		}
		if k := userFamilyKeys(tx, "bob"); len(k) != 0 {
			return fmt.Errorf("bob index has %d keys", len(k))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestFamilyCapAndDeleteUser(t *testing.T) {
	s := openTemp(t, Options{MaxFamiliesPerUser: 3})
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	if err := s.CreateUser(User{Name: "ann"}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := s.CreateFamily(newFamily(fmt.Sprint("f", i), "ann", now.Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		_, err := s.GetFamily(fmt.Sprint("f", i))
		if i < 2 && !errors.Is(err, ErrNotFound) {
			t.Errorf("oldest family f%d kept past the cap: %v", i, err)
		}
		if i >= 2 && err != nil {
			t.Errorf("newest family f%d dropped: %v", i, err)
		}
	}
	if err := s.DeleteUser("ann"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetFamily("f4"); !errors.Is(err, ErrNotFound) {
		t.Errorf("family survived DeleteUser: %v", err)
	}
}

// TestConcurrentRotateOneWins: two clients present the same refresh token
// at once. Exactly one rotates; the other is seen as reuse (or finds the
// family already revoked), and the family ends revoked.
func TestConcurrentRotateOneWins(t *testing.T) {
	s := openTemp(t, Options{})
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	const n = 8
	if err := s.CreateFamily(newFamily("f", "ann", now)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = s.RotateFamily("f", []byte("h0"), []byte(fmt.Sprint("next", i)), now)
		}()
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrTokenReuse), errors.Is(err, ErrRevoked):
		default:
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d rotations succeeded, want exactly 1 (errors %v)", ok, errs)
	}
	if f, _ := s.GetFamily("f"); !f.Revoked {
		t.Error("family not revoked after concurrent reuse")
	}
}

func TestSigningKeys(t *testing.T) {
	s := openTemp(t, Options{})
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	k2 := SigningKey{ID: "k2", Alg: "EdDSA", Private: []byte("p2"), Created: t0.Add(time.Hour)}
	k1 := SigningKey{ID: "k1", Alg: "EdDSA", Private: []byte("p1"), Created: t0}
	for _, k := range []SigningKey{k2, k1} {
		if err := s.AddSigningKey(k); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddSigningKey(k1); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("duplicate key err = %v", err)
	}
	if err := s.AddSigningKey(SigningKey{ID: "k3", Alg: "EdDSA"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("key without material err = %v", err)
	}
	if err := s.RetireSigningKey("k1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RetireSigningKey("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("retire unknown err = %v", err)
	}
	keys, err := s.SigningKeys()
	if err != nil || len(keys) != 2 {
		t.Fatalf("SigningKeys = %+v, %v", keys, err)
	}
	if keys[0].ID != "k1" || !keys[0].Retired || keys[1].ID != "k2" || keys[1].Retired ||
		string(keys[1].Private) != "p2" {
		t.Fatalf("keys not oldest-first with retirement: %+v", keys)
	}
}

func TestSecretGetOrCreate(t *testing.T) {
	s := openTemp(t, Options{})
	calls := 0
	gen := func() ([]byte, error) { calls++; return []byte(fmt.Sprint("v", calls)), nil }
	a, err := s.Secret("turn", gen)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Secret("turn", gen)
	if err != nil || !bytes.Equal(a, b) || calls != 1 {
		t.Fatalf("second Secret = %q, %v after %d generate calls; want %q from 1 call", b, err, calls, a)
	}
	if _, err := s.Secret("bad", func() ([]byte, error) { return nil, nil }); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty generated secret err = %v", err)
	}
	boom := errors.New("boom")
	if _, err := s.Secret("bad", func() ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("generate error = %v", err)
	}
	// A failed generate stored nothing.
	c, err := s.Secret("bad", func() ([]byte, error) { return []byte("ok"), nil })
	if err != nil || string(c) != "ok" {
		t.Fatalf("Secret after failures = %q, %v", c, err)
	}
}

func TestSecretConcurrentAgree(t *testing.T) {
	s := openTemp(t, Options{})
	const n = 8
	out := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := s.Secret("turn", func() ([]byte, error) { return []byte(fmt.Sprint("gen", i)), nil })
			if err != nil {
				t.Error(err)
			}
			out[i] = v
		}()
	}
	wg.Wait()
	for i := range out {
		if !bytes.Equal(out[i], out[0]) {
			t.Fatalf("callers disagree on the secret: %q", out)
		}
	}
}

func TestAuditLog(t *testing.T) {
	s := openTemp(t, Options{AuditMax: 32})
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	const total = 200
	for i := range total {
		if err := s.Audit(AuditEvent{Time: t0.Add(time.Duration(i) * time.Second), Kind: "login",
			User: fmt.Sprint("u", i), Addr: "192.0.2.1"}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := s.AuditLog(5)
	if err != nil || len(evs) != 5 {
		t.Fatalf("AuditLog(5) = %d events, %v", len(evs), err)
	}
	if evs[0].User != fmt.Sprint("u", total-1) || evs[4].User != fmt.Sprint("u", total-5) || evs[0].Seq != total {
		t.Fatalf("not newest first: %+v", evs)
	}
	all, err := s.AuditLog(1 << 30)
	if err != nil {
		t.Fatal(err)
	}
	// Bounded: at most AuditMax + slack (32/16+1 = 3) events survive.
	if len(all) < 32 || len(all) > 35 {
		t.Fatalf("log holds %d events, want 32..35", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq != all[i-1].Seq-1 {
			t.Fatalf("gap in kept events at %d: %d then %d", i, all[i-1].Seq, all[i].Seq)
		}
	}
	if def, _ := s.AuditLog(0); len(def) != len(all) { // default page 100 > kept
		t.Fatalf("AuditLog(0) = %d events, want %d", len(def), len(all))
	}
}

func TestAuditTruncatesAndStamps(t *testing.T) {
	s := openTemp(t, Options{})
	long := string(bytes.Repeat([]byte("é"), 2000)) // 4000 bytes
	if err := s.Audit(AuditEvent{Kind: "x", User: long, Detail: long}); err != nil {
		t.Fatal(err)
	}
	evs, err := s.AuditLog(1)
	if err != nil || len(evs) != 1 {
		t.Fatal(evs, err)
	}
	ev := evs[0]
	if len(ev.User) > maxAuditField || len(ev.Detail) > maxAuditDetail || ev.Time.IsZero() {
		t.Fatalf("event not bounded/stamped: user %d bytes, detail %d bytes, time %v",
			len(ev.User), len(ev.Detail), ev.Time)
	}
	if ev.User != long[:maxAuditField] { // 256 is even, so no rune is split
		t.Errorf("user truncated wrongly")
	}
}
