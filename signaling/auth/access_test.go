package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestIssueVerify(t *testing.T) {
	clk := newClock()
	k := newKeys(t, openStore(t), clk)
	tok, exp, err := k.IssueAccess(Claims{User: "ann", Role: "admin", Rooms: []string{"lobby"}}, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(clk.Now().Add(15 * time.Minute)) {
		t.Errorf("exp = %v", exp)
	}
	c, err := k.VerifyAccess(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.User != "ann" || c.Role != "admin" || len(c.Rooms) != 1 || c.Rooms[0] != "lobby" ||
		c.ID == "" || !c.Expires.Equal(exp) || !c.IssuedAt.Equal(clk.Now()) {
		t.Fatalf("claims = %+v", c)
	}
	// The header names the key and the algorithm is EdDSA.
	hdr := decodeSegment(t, tok, 0)
	if !strings.Contains(hdr, `"kid":"`+k.SigningKID()+`"`) || !strings.Contains(hdr, `"alg":"EdDSA"`) {
		t.Errorf("header = %s", hdr)
	}
	payload := decodeSegment(t, tok, 1)
	for _, want := range []string{`"iss":"khadga"`, `"aud":["khadga"]`, `"typ":"access"`, `"sub":"ann"`, `"nbf":`, `"jti":`} {
		if !strings.Contains(payload, want) {
			t.Errorf("payload %s lacks %s", payload, want)
		}
	}
	if _, _, err := k.IssueAccess(Claims{}, time.Minute); err == nil {
		t.Error("IssueAccess without a user succeeded")
	}
}

func TestExpiry(t *testing.T) {
	clk := newClock()
	k := newKeys(t, openStore(t), clk)
	tok, _, err := k.IssueAccess(Claims{User: "ann", Role: "user"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute + 10*time.Second) // within the 30 s leeway
	if _, err := k.VerifyAccess(tok); err != nil {
		t.Fatalf("token within leeway rejected: %v", err)
	}
	clk.Advance(time.Minute)
	_, err = k.VerifyAccess(tok)
	if !errors.Is(err, ErrTokenExpired) || errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("expired token err = %v, want ErrTokenExpired only", err)
	}
}

func TestNotYetValid(t *testing.T) {
	clk := newClock()
	k := newKeys(t, openStore(t), clk)
	tok, _, _ := k.IssueAccess(Claims{User: "ann"}, time.Hour)
	clk.Advance(-5 * time.Minute) // verifier clock far behind the issuer
	if _, err := k.VerifyAccess(tok); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("future token err = %v, want ErrTokenInvalid", err)
	}
}

// forge signs claims with any method and key, with the given kid header.
func forge(t *testing.T, m jwt.SigningMethod, key any, kid string, claims jwt.Claims) string {
	t.Helper()
	tk := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tk.Header["kid"] = kid
	}
	s, err := tk.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func goodClaims(now time.Time) *jwtClaims {
	return &jwtClaims{Role: "admin", Typ: TypeAccess, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: Issuer, Audience: jwt.ClaimStrings{Audience}, Subject: "mallory", ID: "x",
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}}
}

func TestVerifyRejectsForgeries(t *testing.T) {
	clk := newClock()
	k := newKeys(t, openStore(t), clk)
	kid := k.SigningKID()
	now := clk.Now()
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	pub := k.verify[kid]
	valid, _, err := k.IssueAccess(Claims{User: "ann", Role: "user"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	mod := func(f func(c *jwtClaims)) *jwtClaims { c := goodClaims(now); f(c); return c }
	cases := map[string]string{
		"other key same kid":    forge(t, jwt.SigningMethodEdDSA, otherKey, kid, goodClaims(now)),
		"unknown kid":           forge(t, jwt.SigningMethodEdDSA, otherKey, "nope", goodClaims(now)),
		"no kid":                forge(t, jwt.SigningMethodEdDSA, k.signKey, "", goodClaims(now)),
		"alg none":              forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kid, goodClaims(now)),
		"HS256 with public key": forge(t, jwt.SigningMethodHS256, []byte(pub), kid, goodClaims(now)),
		"tampered payload":      tamper(t, valid),
		"wrong typ":             forge(t, jwt.SigningMethodEdDSA, k.signKey, kid, mod(func(c *jwtClaims) { c.Typ = "refresh" })),
		"no typ":                forge(t, jwt.SigningMethodEdDSA, k.signKey, kid, mod(func(c *jwtClaims) { c.Typ = "" })),
		"wrong issuer":          forge(t, jwt.SigningMethodEdDSA, k.signKey, kid, mod(func(c *jwtClaims) { c.Issuer = "evil" })),
		"wrong audience":        forge(t, jwt.SigningMethodEdDSA, k.signKey, kid, mod(func(c *jwtClaims) { c.Audience = jwt.ClaimStrings{"other"} })),
		"no exp":                forge(t, jwt.SigningMethodEdDSA, k.signKey, kid, mod(func(c *jwtClaims) { c.ExpiresAt = nil })),
		"no sub":                forge(t, jwt.SigningMethodEdDSA, k.signKey, kid, mod(func(c *jwtClaims) { c.Subject = "" })),
		"garbage":               "not.a.jwt",
		"empty":                 "",
		"huge":                  strings.Repeat("a", MaxTokenLen+1),
	}
	// Sanity: the forger itself works, so rejections below are meaningful.
	if _, err := k.VerifyAccess(forge(t, jwt.SigningMethodEdDSA, k.signKey, kid, goodClaims(now))); err != nil {
		t.Fatalf("control token rejected: %v", err)
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := k.VerifyAccess(tok)
			if !errors.Is(err, ErrTokenInvalid) {
				t.Fatalf("VerifyAccess = %+v, %v; want ErrTokenInvalid", c, err)
			}
			if testing.Verbose() {
				t.Log(err)
			}
		})
	}
}

// TestExpiredWrongTypIsInvalid: an expired token of another typ is not
// reported as merely expired (which would invite a refresh).
func TestExpiredWrongTypIsInvalid(t *testing.T) {
	clk := newClock()
	k := newKeys(t, openStore(t), clk)
	c := goodClaims(clk.Now().Add(-3 * time.Hour))
	c.Typ = "refresh"
	_, err := k.VerifyAccess(forge(t, jwt.SigningMethodEdDSA, k.signKey, k.SigningKID(), c))
	if !errors.Is(err, ErrTokenInvalid) || errors.Is(err, ErrTokenExpired) {
		t.Fatalf("err = %v, want ErrTokenInvalid only", err)
	}
}

// tamper flips the role in the payload and keeps the signature.
func tamper(t *testing.T, tok string) string {
	parts := strings.Split(tok, ".")
	payload := decodeSegment(t, tok, 1)
	evil := strings.Replace(payload, `"role":"user"`, `"role":"admin"`, 1)
	if evil == payload {
		t.Fatalf("payload %s has no role to tamper with", payload)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(evil))
	return strings.Join(parts, ".")
}

func decodeSegment(t *testing.T, tok string, i int) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRotateAndRetire(t *testing.T) {
	clk := newClock()
	st := openStore(t)
	k := newKeys(t, st, clk)
	oldKID := k.SigningKID()
	oldTok, _, _ := k.IssueAccess(Claims{User: "ann"}, time.Hour)
	if err := k.Retire(oldKID); !errors.Is(err, ErrNoActiveKey) {
		t.Fatalf("retiring the only key err = %v, want ErrNoActiveKey", err)
	}
	newKID, err := k.Rotate()
	if err != nil || newKID == oldKID || k.SigningKID() != newKID {
		t.Fatalf("Rotate = %q, %v; signing kid %q", newKID, err, k.SigningKID())
	}
	newTok, _, _ := k.IssueAccess(Claims{User: "ann"}, time.Hour)
	if !strings.Contains(decodeSegment(t, newTok, 0), newKID) {
		t.Error("new token does not use the new kid")
	}
	for _, tok := range []string{oldTok, newTok} {
		if _, err := k.VerifyAccess(tok); err != nil {
			t.Fatalf("token rejected after rotation: %v", err)
		}
	}
	// A second Keys over the same store (a restart) agrees.
	k2 := newKeys(t, st, clk)
	if k2.SigningKID() != newKID {
		t.Errorf("reloaded signing kid = %q, want %q", k2.SigningKID(), newKID)
	}
	if _, err := k2.VerifyAccess(oldTok); err != nil {
		t.Errorf("reloaded keys reject old token: %v", err)
	}
	if err := k.Retire(oldKID); err != nil {
		t.Fatal(err)
	}
	if _, err := k.VerifyAccess(oldTok); !errors.Is(err, ErrTokenInvalid) {
		t.Errorf("token of retired key err = %v", err)
	}
	if _, err := k.VerifyAccess(newTok); err != nil {
		t.Errorf("new token rejected after retiring old key: %v", err)
	}
	if err := k.Retire("nope"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("retire unknown err = %v", err)
	}
}

// A token verified once is served from the cache (no signature check:
// a few allocations instead of dozens), and only that exact token is.
func TestVerifiedCache(t *testing.T) {
	clk := newClock()
	k := newKeys(t, openStore(t), clk)
	tok, _, err := k.IssueAccess(Claims{User: "ann", Role: "user", Rooms: []string{"lab"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	first, err := k.VerifyAccess(tok)
	if err != nil {
		t.Fatal(err)
	}
	full := testing.AllocsPerRun(20, func() {
		k.verified = verifiedCache{}
		_, _ = k.VerifyAccess(tok)
	})
	cached := testing.AllocsPerRun(100, func() {
		c, err := k.VerifyAccess(tok)
		if err != nil || c.User != "ann" || c.ID != first.ID || len(c.Rooms) != 1 {
			t.Fatalf("cached verify: %+v, %v", c, err)
		}
	})
	if cached > 2 || full < 10 {
		t.Fatalf("allocations per verify: %v cached, %v in full; want the cache to skip the parse", cached, full)
	}
	// The same token with its last signature character changed is not
	// the cached one, and is refused.
	forged := tok[:len(tok)-1] + string("AB"[strings.IndexByte("AB", tok[len(tok)-1])+1&1])
	if _, err := k.VerifyAccess(forged); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("forged token: %v", err)
	}
	// The cache stays bounded.
	for i := range maxVerified + 10 {
		k.verified.put(fmt.Sprint("t", i), first, "kid")
	}
	if n := len(k.verified.m); n > maxVerified {
		t.Fatalf("cache holds %d entries, limit %d", n, maxVerified)
	}
}
