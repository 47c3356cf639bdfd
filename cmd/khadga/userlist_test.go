package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/khadga/khadga/signaling/store"
)

// TestUserListShowsSecondFactorAndEmail: `khadga user list` says which
// accounts sign in with a second factor, and each account's address with
// whether it was confirmed, so that an operator can answer "why can't
// erin sign in?" without opening the store.
func TestUserListShowsSecondFactorAndEmail(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "khadga-data", "khadga.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []store.User{
		{Name: "dave", Role: "user", TOTP: &store.TOTP{Secret: "JBSWY3DP", Enabled: true}, Email: "dave@example.org", EmailVerified: true},
		{Name: "erin", Role: "user", Email: "erin@example.org"},
		{Name: "frank", Role: "user", TOTP: &store.TOTP{Secret: "JBSWY3DP"}}, // enrolment never confirmed
	} {
		if err := st.CreateUser(u); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	out, err := run(t, dir, "", "user", "list")
	if err != nil {
		t.Fatalf("user list: %v\n%s", err, out)
	}
	space := regexp.MustCompile(` +`)
	lines := strings.Split(space.ReplaceAllString(strings.TrimSpace(out), " "), "\n")
	want := []string{
		"NAME ROLE DISABLED 2FA EMAIL CREATED",
		"dave user false on dave@example.org ",
		"erin user false off erin@example.org (unconfirmed) ",
		"frank user false off - ",
	}
	if len(lines) != len(want) {
		t.Fatalf("user list:\n%s", out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d: %q, want it to start with %q", i, lines[i], w)
		}
	}
}
