package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/store"
)

func testFamilyRotation(t *testing.T, c Config) {
	s, _ := open(t, c, Limits{})
	mustCreateUsers(t, s, "ann")
	mustCreateFamilies(t, s, newFamily("f1", "ann", t0))
	if err := s.CreateFamily(newFamily("f1", "ann", t0)); !errors.Is(err, store.ErrFamilyExists) {
		t.Fatalf("duplicate family err = %v", err)
	}
	if err := s.CreateFamily(store.Family{ID: "f2", User: "ann"}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("family without Current and Expires err = %v", err)
	}
	f, err := s.RotateFamily("f1", []byte("h0"), []byte("h1"), t0)
	if err != nil || f.Generation != 1 || string(f.Current) != "h1" {
		t.Fatalf("rotate = %+v, %v", f, err)
	}
	if f, err = s.RotateFamily("f1", []byte("h1"), []byte("h2"), t0); err != nil || f.Generation != 2 {
		t.Fatalf("second rotate = %+v, %v", f, err)
	}
	if _, err := s.RotateFamily("nope", []byte("h0"), []byte("h1"), t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown family err = %v", err)
	}
	if _, err := s.RotateFamily("f1", []byte("h2"), nil, t0); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("empty next hash err = %v", err)
	}
	// Replaying h1 (already rotated away) is reuse: the family dies.
	f, err = s.RotateFamily("f1", []byte("h1"), []byte("hx"), t0)
	if !errors.Is(err, store.ErrTokenReuse) || f.User != "ann" || f.ID != "f1" {
		t.Fatalf("reuse = %+v, %v; want ErrTokenReuse with the family", f, err)
	}
	// Even the legitimate newest secret no longer works.
	if _, err := s.RotateFamily("f1", []byte("h2"), []byte("h3"), t0); !errors.Is(err, store.ErrRevoked) {
		t.Fatalf("rotate after reuse err = %v, want ErrRevoked", err)
	}
	if got, _ := s.GetFamily("f1"); !got.Revoked || string(got.Current) != "h2" || got.Generation != 2 {
		t.Fatalf("family after reuse = %+v", got)
	}
	if _, err := s.GetFamily("nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetFamily unknown err = %v", err)
	}
}

// testFamilyNeedsUser: a family belongs to an account; a login racing the
// account's deletion must not leave one behind.
func testFamilyNeedsUser(t *testing.T, c Config) {
	s, _ := open(t, c, Limits{})
	if err := s.CreateFamily(newFamily("f1", "ghost", t0)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("family of a missing user err = %v, want ErrNotFound", err)
	}
	if _, err := s.GetFamily("f1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused family exists: %v", err)
	}
	// The refused id is not taken.
	mustCreateUsers(t, s, "ghost")
	mustCreateFamilies(t, s, newFamily("f1", "ghost", t0))
}

func testFamilyExpiryRevokePurge(t *testing.T, c Config) {
	s, _ := open(t, c, Limits{})
	mustCreateUsers(t, s, "ann", "bob")
	mustCreateFamilies(t, s, newFamily("a1", "ann", t0), newFamily("a2", "ann", t0.Add(time.Second)), newFamily("b1", "bob", t0))
	if _, err := s.RotateFamily("b1", []byte("h0"), []byte("h1"), t0.Add(time.Hour)); !errors.Is(err, store.ErrRevoked) {
		t.Fatalf("rotate at expiry err = %v, want ErrRevoked", err)
	}
	if err := s.RevokeFamily("b1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeFamily("zz"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoke unknown err = %v", err)
	}
	ids, err := s.RevokeUserFamilyIDs("ann")
	if slices.Sort(ids); err != nil || !slices.Equal(ids, []string{"a1", "a2"}) {
		t.Fatalf("RevokeUserFamilyIDs = %v, %v", ids, err)
	}
	if ids, err := s.RevokeUserFamilyIDs("ann"); err != nil || len(ids) != 0 {
		t.Fatalf("second RevokeUserFamilyIDs = %v, %v; want none (already revoked)", ids, err)
	}
	if err := s.RevokeUserFamilies("nobody"); err != nil {
		t.Fatalf("RevokeUserFamilies of a user without families: %v", err)
	}
	for _, id := range []string{"a1", "a2", "b1"} {
		if _, err := s.RotateFamily(id, []byte("h0"), []byte("h1"), t0); !errors.Is(err, store.ErrRevoked) {
			t.Errorf("rotate revoked %s err = %v", id, err)
		}
	}
	n, err := s.PurgeExpired(t0.Add(time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("purge = %d, %v; want 2 (a1, b1)", n, err)
	}
	if _, err := s.GetFamily("a1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a1 survived purge: %v", err)
	}
	if f, err := s.GetFamily("a2"); err != nil || !f.Revoked {
		t.Errorf("a2 purged too early: %+v, %v", f, err)
	}
	if fams, err := s.ListFamilies(); err != nil || len(fams) != 1 || fams[0].ID != "a2" {
		t.Errorf("ListFamilies after purge = %+v, %v", fams, err)
	}
}

func testFamilyCapAndDeleteUser(t *testing.T, c Config) {
	s, _ := open(t, c, Limits{MaxFamiliesPerUser: 3})
	mustCreateUsers(t, s, "ann", "bob")
	for i := range 5 {
		mustCreateFamilies(t, s, newFamily(fmt.Sprint("f", i), "ann", t0.Add(time.Duration(i)*time.Second)))
	}
	mustCreateFamilies(t, s, newFamily("b", "bob", t0))
	for i := range 5 {
		_, err := s.GetFamily(fmt.Sprint("f", i))
		if i < 2 && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("oldest family f%d kept past the cap: %v", i, err)
		}
		if i >= 2 && err != nil {
			t.Errorf("newest family f%d dropped: %v", i, err)
		}
	}
	fams, err := s.ListFamilies()
	var ids []string
	for _, f := range fams {
		ids = append(ids, f.ID)
	}
	if err != nil || !slices.Equal(ids, []string{"f2", "f3", "f4", "b"}) {
		t.Fatalf("ListFamilies = %v, %v; want ann's by age, then bob's", ids, err)
	}
	logins, err := s.DeleteUser("ann")
	slices.Sort(logins)
	if err != nil || !slices.Equal(logins, []string{"f2", "f3", "f4"}) {
		t.Fatalf("DeleteUser = %v, %v; want ann's families f2, f3, f4", logins, err)
	}
	if _, err := s.GetFamily("f4"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("family survived DeleteUser: %v", err)
	}
	if _, err := s.RotateFamily("f4", []byte("h0"), []byte("h1"), t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rotate of a deleted user's family err = %v", err)
	}
	// A new account of the same name does not inherit the old sessions.
	mustCreateUsers(t, s, "ann")
	if _, err := s.GetFamily("f4"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("recreated account inherited a family: %v", err)
	}
	if _, err := s.GetFamily("b"); err != nil {
		t.Errorf("bob's family went with ann: %v", err)
	}
}

// rotateAll presents the same refresh token (h0 of family f) through each
// store at once, and returns what each got.
func rotateAll(nodes []store.Backend, n int) []error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = nodes[i%len(nodes)].RotateFamily("f", []byte("h0"), []byte(fmt.Sprint("next", i)), t0)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// checkOneWon checks that exactly one rotation succeeded, that the others
// saw reuse (or the family already revoked), and that every node sees the
// family revoked.
func checkOneWon(t *testing.T, errs []error, nodes []store.Backend) {
	t.Helper()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrTokenReuse), errors.Is(err, store.ErrRevoked):
		default:
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d rotations succeeded, want exactly 1 (errors %v)", ok, errs)
	}
	for i, s := range nodes {
		if f, err := s.GetFamily("f"); err != nil || !f.Revoked {
			t.Errorf("node %d: family after concurrent reuse = %+v, %v; want revoked", i, f, err)
		}
	}
}

// testConcurrentRotateOneWins: clients present the same refresh token at
// once. Exactly one rotates; the others are reuse, which revokes the family.
func testConcurrentRotateOneWins(t *testing.T, c Config) {
	s, _ := open(t, c, Limits{})
	mustCreateUsers(t, s, "ann")
	mustCreateFamilies(t, s, newFamily("f", "ann", t0))
	nodes := []store.Backend{s}
	checkOneWon(t, rotateAll(nodes, 8), nodes)
}

// testTwoNodesRotateOneWins is the same from two nodes at once.
func testTwoNodesRotateOneWins(t *testing.T, c Config) {
	if !c.Nodes {
		t.Skip("this backend is one process")
	}
	for round := range 5 { // the race is decided differently each time
		s, o := open(t, c, Limits{})
		mustCreateUsers(t, s, "ann")
		mustCreateFamilies(t, s, newFamily("f", "ann", t0))
		nodes := []store.Backend{s, o(t, Limits{})}
		t.Logf("round %d", round)
		checkOneWon(t, rotateAll(nodes, 2), nodes)
	}
}

// testReuseRevokesOnEveryNode: a token rotated on one node and replayed on
// the other revokes the family for both.
func testReuseRevokesOnEveryNode(t *testing.T, c Config) {
	if !c.Nodes {
		t.Skip("this backend is one process")
	}
	a, o := open(t, c, Limits{})
	b := o(t, Limits{})
	mustCreateUsers(t, a, "ann")
	mustCreateFamilies(t, a, newFamily("f", "ann", t0))
	if _, err := a.RotateFamily("f", []byte("h0"), []byte("h1"), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.RotateFamily("f", []byte("h0"), []byte("hx"), t0); !errors.Is(err, store.ErrTokenReuse) {
		t.Fatalf("replay on node b err = %v, want ErrTokenReuse", err)
	}
	if _, err := a.RotateFamily("f", []byte("h1"), []byte("h2"), t0); !errors.Is(err, store.ErrRevoked) {
		t.Fatalf("node a after reuse on b err = %v, want ErrRevoked", err)
	}
}

// testDeleteUserIf: a check that refuses deletes nothing (the user, its
// families and rooms stay); one that passes sees the record and deletes
// as DeleteUser does.
func testDeleteUserIf(t *testing.T, c Config) {
	s, _ := open(t, c, Limits{})
	if err := s.CreateUser(store.User{Name: "ann", Role: "user", Email: "ann@example.org"}); err != nil {
		t.Fatal(err)
	}
	mustCreateFamilies(t, s, newFamily("f", "ann", t0))
	if _, claimed, err := s.SetRoom("r", "ann", 3, noChange); err != nil || !claimed {
		t.Fatalf("claim: %v, %v", claimed, err)
	}
	refused := errors.New("not this one")
	var seen string
	_, err := s.DeleteUserIf("ann", func(u store.User) error { seen = u.Email; return refused })
	if !errors.Is(err, refused) || seen != "ann@example.org" {
		t.Fatalf("refused DeleteUserIf = %v, saw email %q", err, seen)
	}
	if _, err := s.GetUser("ann"); err != nil {
		t.Errorf("user gone after a refused check: %v", err)
	}
	if _, err := s.GetFamily("f"); err != nil {
		t.Errorf("family gone after a refused check: %v", err)
	}
	if r, err := s.GetRoom("r"); err != nil || r.Owner != "ann" {
		t.Errorf("room after a refused check: %+v, %v", r, err)
	}
	logins, err := s.DeleteUserIf("ann", func(store.User) error { return nil })
	if err != nil || !slices.Equal(logins, []string{"f"}) {
		t.Fatalf("DeleteUserIf = %v, %v; want family f", logins, err)
	}
	if _, err := s.GetRoom("r"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("room survived DeleteUserIf: %v", err)
	}
	if _, err := s.DeleteUserIf("ann", nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteUserIf of a missing user err = %v", err)
	}
}
