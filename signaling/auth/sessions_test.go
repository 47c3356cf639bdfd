package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/store"
)

type sessFixture struct {
	st   *store.Store
	keys *Keys
	s    *Sessions
	clk  *fakeClock
	ann  store.User
}

func newSessFixture(t *testing.T) *sessFixture {
	t.Helper()
	clk := newClock()
	st := openStore(t)
	keys := newKeys(t, st, clk)
	hash, err := cheapParams.Hash("pw")
	if err != nil {
		t.Fatal(err)
	}
	ann := store.User{Name: "ann", PasswordHash: hash, Role: "user"}
	if err := st.CreateUser(ann); err != nil {
		t.Fatal(err)
	}
	s := NewSessions(st, keys, SessionsOptions{AccessTTL: 5 * time.Minute, RefreshTTL: time.Hour, Now: clk.Now})
	return &sessFixture{st: st, keys: keys, s: s, clk: clk, ann: ann}
}

func TestLoginRefresh(t *testing.T) {
	f := newSessFixture(t)
	p, err := f.s.Login(f.ann)
	if err != nil {
		t.Fatal(err)
	}
	if p.ExpiresIn != 300 || p.AccessToken == "" {
		t.Fatalf("pair = %+v", p)
	}
	id, secret, ok := parseRefresh(p.RefreshToken)
	if !ok || len(secret) < 43 {
		t.Fatalf("refresh token %q does not parse as family.secret", p.RefreshToken)
	}
	fam, err := f.st.GetFamily(id)
	if err != nil || fam.User != "ann" || strings.Contains(string(fam.Current), secret) {
		t.Fatalf("family = %+v, %v", fam, err)
	}
	c, err := f.keys.VerifyAccess(p.AccessToken)
	if err != nil || c.User != "ann" || c.Role != "user" {
		t.Fatalf("access claims = %+v, %v", c, err)
	}

	// A role change shows up in the refreshed access token.
	if err := f.st.UpdateUser("ann", func(u *store.User) error { u.Role = "admin"; return nil }); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Minute)
	p2, err := f.s.Refresh(p.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if p2.RefreshToken == p.RefreshToken || !strings.HasPrefix(p2.RefreshToken, id+".") {
		t.Fatalf("refresh did not rotate within the family: %q -> %q", p.RefreshToken, p2.RefreshToken)
	}
	if c, _ := f.keys.VerifyAccess(p2.AccessToken); c.Role != "admin" {
		t.Errorf("refreshed role = %q, want admin", c.Role)
	}
	if _, err := f.s.Refresh(p2.RefreshToken); err != nil {
		t.Fatalf("second refresh: %v", err)
	}
}

func TestRefreshReuseRevokesFamily(t *testing.T) {
	f := newSessFixture(t)
	p1, _ := f.s.Login(f.ann)
	other, _ := f.s.Login(f.ann) // a second device, must survive
	p2, err := f.s.Refresh(p1.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	p3, err := f.s.Refresh(p2.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	// The attacker replays p1.
	_, err = f.s.Refresh(p1.RefreshToken)
	var re *ReuseError
	if !errors.Is(err, ErrTokenReuse) || !errors.As(err, &re) || re.User != "ann" {
		t.Fatalf("replay err = %v, want *ReuseError for ann", err)
	}
	// Now even the newest token of that family is dead.
	if _, err := f.s.Refresh(p3.RefreshToken); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("newest token after reuse err = %v, want ErrTokenInvalid", err)
	}
	if _, err := f.s.Refresh(other.RefreshToken); err != nil {
		t.Fatalf("other family hit by reuse: %v", err)
	}
}

func TestLogout(t *testing.T) {
	f := newSessFixture(t)
	p, _ := f.s.Login(f.ann)
	// The family id alone (every access token carries it) is not enough.
	id, _, _ := strings.Cut(p.RefreshToken, ".")
	if _, err := f.s.Logout(id + ".not-the-secret"); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("logout with the family id and a wrong secret: err = %v, want ErrTokenInvalid", err)
	}
	if _, err := f.s.Refresh(p.RefreshToken); err != nil {
		t.Fatalf("the sign-in ended by a logout without its secret: %v", err)
	}
	p, _ = f.s.Login(f.ann)
	fam, err := f.s.Logout(p.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := f.keys.VerifyAccess(p.AccessToken); fam.User != f.ann.Name || fam.ID != c.Login || c.Login == "" {
		t.Errorf("Logout returned family %q of %q; the access token's sign-in is %q", fam.ID, fam.User, c.Login)
	}
	if _, err := f.s.Refresh(p.RefreshToken); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("refresh after logout err = %v", err)
	}
	if _, err := f.s.Logout(p.RefreshToken); err != nil {
		t.Errorf("second logout err = %v, want nil", err)
	}
	if _, err := f.s.Logout("garbage"); !errors.Is(err, ErrTokenInvalid) {
		t.Errorf("malformed logout err = %v", err)
	}
}

func TestDisabledOrDeletedUserCannotRefresh(t *testing.T) {
	f := newSessFixture(t)
	p, _ := f.s.Login(f.ann)
	if err := f.st.UpdateUser("ann", func(u *store.User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Refresh(p.RefreshToken); !errors.Is(err, ErrUserDisabled) {
		t.Fatalf("disabled refresh err = %v", err)
	}
	disabled, _ := f.st.GetUser("ann")
	if _, err := f.s.Login(disabled); !errors.Is(err, ErrUserDisabled) {
		t.Fatalf("disabled login err = %v", err)
	}
	// Re-enabling does not resurrect the revoked family.
	_ = f.st.UpdateUser("ann", func(u *store.User) error { u.Disabled = false; return nil })
	if _, err := f.s.Refresh(p.RefreshToken); err == nil {
		t.Fatal("family survived the disabled refresh")
	}

	bob := store.User{Name: "bob", Role: "user"}
	if err := f.st.CreateUser(bob); err != nil {
		t.Fatal(err)
	}
	pb, _ := f.s.Login(bob)
	if err := f.st.DeleteUser("bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Refresh(pb.RefreshToken); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("deleted user's refresh err = %v, want ErrTokenInvalid", err)
	}
}

func TestRefreshExpiresAndMalformed(t *testing.T) {
	f := newSessFixture(t)
	p, _ := f.s.Login(f.ann)
	f.clk.Advance(time.Hour)
	if _, err := f.s.Refresh(p.RefreshToken); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("expired family err = %v", err)
	}
	id, _, _ := parseRefresh(p.RefreshToken)
	for _, tok := range []string{"", ".", id, id + ".", id + ".short", "a.b.c",
		id + "." + strings.Repeat("A", 43) + "=", strings.Repeat("x", 500)} {
		if _, err := f.s.Refresh(tok); !errors.Is(err, ErrTokenInvalid) {
			t.Errorf("Refresh(%q) err = %v", tok, err)
		}
	}
}
