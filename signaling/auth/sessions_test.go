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
	key, secret, ok := parseRefresh(p.RefreshToken)
	if !ok || len(secret) < 43 {
		t.Fatalf("refresh token %q does not parse as key.secret", p.RefreshToken)
	}
	// The family's id, which access tokens show, is not the token's key.
	fam, err := f.st.GetFamily(p.Family())
	if err != nil || fam.User != "ann" || !fam.Keyed || fam.ID == key || fam.ID != familyID(key) || strings.Contains(string(fam.Current), secret) {
		t.Fatalf("family = %+v, %v", fam, err)
	}
	c, err := f.keys.VerifyAccess(p.AccessToken)
	if err != nil || c.User != "ann" || c.Role != "user" || c.Login != fam.ID {
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
	if p2.RefreshToken == p.RefreshToken || !strings.HasPrefix(p2.RefreshToken, key+".") || p2.Family() != fam.ID {
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

// The family id is in every access token (claim sid), which anyone who
// sees one can read without the key. With a made-up secret it is no
// refresh token of the family: refused, and the sign-in goes on (before,
// it counted as the replay of an old token and revoked the family).
func TestFamilyIDIsNoRefreshToken(t *testing.T) {
	f := newSessFixture(t)
	p, _ := f.s.Login(f.ann)
	c, err := f.keys.VerifyAccess(p.AccessToken)
	if err != nil || c.Login == "" {
		t.Fatalf("claims %+v, %v", c, err)
	}
	forged := c.Login + "." + randomString(refreshSecBytes)
	if _, err := f.s.Refresh(forged); !errors.Is(err, ErrTokenInvalid) || errors.Is(err, ErrTokenReuse) {
		t.Fatalf("refresh with the sid and a made-up secret: err = %v, want ErrTokenInvalid", err)
	}
	if fam, err := f.s.Logout(forged); fam.ID != "" || (err != nil && !errors.Is(err, ErrTokenInvalid)) {
		t.Fatalf("logout with the sid and a made-up secret: %+v, %v; want no family", fam, err)
	}
	if _, err := f.s.Refresh(p.RefreshToken); err != nil {
		t.Fatalf("the sign-in after the forged refresh: %v", err)
	}
}

// A family made before refresh tokens had keys (its id is the token's
// first part) still refreshes, and a replay of its old token still
// revokes it, until it expires.
func TestFamilyFromBeforeKeys(t *testing.T) {
	f := newSessFixture(t)
	id, secret := randomString(familyIDBytes), randomString(refreshSecBytes)
	if err := f.st.CreateFamily(store.Family{ID: id, User: "ann", Current: hashSecret(secret), Expires: f.clk.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	old := id + "." + secret
	p, err := f.s.Refresh(old)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := f.keys.VerifyAccess(p.AccessToken); p.Family() != id || c.Login != id || !strings.HasPrefix(p.RefreshToken, id+".") {
		t.Fatalf("refreshed pair names family %q (claims %q), token %q; want %q", p.Family(), c.Login, p.RefreshToken, id)
	}
	if _, err := f.s.Refresh(old); !errors.Is(err, ErrTokenReuse) {
		t.Fatalf("replay of a keyless family's old token: err = %v, want ErrTokenReuse", err)
	}
}

// A login that checked the old password and stores its sign-in after a
// password change revoked the account's sign-ins revokes its own: it
// would otherwise outlive the change that was meant to lock out whoever
// knows the old password.
func TestLoginDuringPasswordChange(t *testing.T) {
	f := newSessFixture(t)
	read := f.ann // the login read the account, and checked "pw" against it
	newHash, err := cheapParams.Hash("a new password")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.UpdateUser("ann", func(u *store.User) error { u.PasswordHash = newHash; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.RevokeUserFamilyIDs("ann"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Login(read); !errors.Is(err, ErrCredentialsChanged) {
		t.Fatalf("login with the old password's read: err = %v, want ErrCredentialsChanged", err)
	}
	fams, err := f.st.ListFamilies()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range fams {
		if !fam.Revoked {
			t.Errorf("family %s of %s is alive after the login refused itself", fam.ID, fam.User)
		}
	}
	if len(fams) != 1 {
		t.Errorf("%d families, want the refused login's one, revoked", len(fams))
	}
	// Disabled meanwhile: the same.
	if err := f.st.UpdateUser("ann", func(u *store.User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	read.PasswordHash = newHash
	if _, err := f.s.Login(read); !errors.Is(err, ErrUserDisabled) {
		t.Fatalf("login of an account disabled meanwhile: err = %v, want ErrUserDisabled", err)
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
	if _, err := f.st.DeleteUser("bob"); err != nil {
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
