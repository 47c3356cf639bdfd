package auth

import (
	"strings"
	"testing"
	"time"
)

// FuzzVerifyAccess feeds arbitrary strings to VerifyAccess: it must never
// panic, and anything it accepts must be a genuine access token.
func FuzzVerifyAccess(f *testing.F) {
	clk := newClock()
	k := newKeys(f, openStore(f), clk)
	good, _, err := k.IssueAccess(Claims{User: "ann", Role: "user"}, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-2])
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := k.VerifyAccess(tok)
		if err == nil && (c.User == "" || c.ID == "") {
			t.Fatalf("accepted token without sub/jti: %q", tok)
		}
		if err == nil && tok != good {
			// Ed25519 signatures are not malleable, so only the one real
			// token can verify.
			t.Fatalf("accepted a token that was never issued: %q", tok)
		}
	})
}

// FuzzParseRefresh checks that parseRefresh never panics and only accepts
// canonical <22 base64url>.<43 base64url> tokens.
func FuzzParseRefresh(f *testing.F) {
	f.Add("AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add(".")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		id, secret, ok := parseRefresh(tok)
		if !ok {
			return
		}
		if len(id) != 22 || len(secret) != 43 || id+"."+secret != tok ||
			strings.ContainsAny(tok, "+/=") {
			t.Fatalf("accepted non-canonical token %q", tok)
		}
	})
}

// FuzzRedeem: arbitrary ticket strings never redeem and never panic.
func FuzzRedeem(f *testing.F) {
	clk := newClock()
	tk := NewTickets(TicketsOptions{Now: clk.Now})
	if _, err := tk.Issue(Claims{User: "ann"}, "192.0.2.1"); err != nil {
		f.Fatal(err)
	}
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, id string) {
		if _, ok := tk.Redeem(id, clk.Now()); ok {
			t.Fatalf("guessed ticket %q redeemed", id)
		}
	})
}
