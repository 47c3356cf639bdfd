package auth

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestHashAndVerify(t *testing.T) {
	h, err := cheapParams.Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^\$argon2id\$v=19\$m=64,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !re.MatchString(h) {
		t.Fatalf("hash %q is not the expected PHC string", h)
	}
	h2, _ := cheapParams.Hash("correct horse")
	if h == h2 {
		t.Error("two hashes of the same password are equal: salt not random")
	}
	for pw, want := range map[string]bool{"correct horse": true, "correct horsE": false, "": false} {
		ok, err := VerifyPassword(h, pw)
		if err != nil || ok != want {
			t.Errorf("VerifyPassword(%q) = %v, %v; want %v", pw, ok, err, want)
		}
	}
	if ok, err := VerifyPassword(h, strings.Repeat("x", MaxPasswordLen+1)); ok || err != nil {
		t.Errorf("over-long password = %v, %v; want false, nil", ok, err)
	}
	if _, err := cheapParams.Hash(strings.Repeat("x", MaxPasswordLen+1)); !errors.Is(err, ErrPasswordTooLong) {
		t.Errorf("Hash over-long err = %v", err)
	}
	if !NeedsRehash(h, DefaultParams) || NeedsRehash(h, cheapParams) {
		t.Error("NeedsRehash does not compare parameters")
	}
	cheapParams.DummyVerify("whatever") // must not panic with these params
}

// TestDefaultParams runs the real cost once.
func TestDefaultParams(t *testing.T) {
	h, err := HashPassword("s3cret pass")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("default hash %q", h)
	}
	if ok, err := VerifyPassword(h, "s3cret pass"); !ok || err != nil {
		t.Fatalf("verify default = %v, %v", ok, err)
	}
	DummyVerify("s3cret pass")
}

func TestVerifyRejectsBadHashes(t *testing.T) {
	salt, key := "AAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	phc := func(alg, v, params, s, k string) string {
		return "$" + alg + "$" + v + "$" + params + "$" + s + "$" + k
	}
	cases := map[string]string{
		"empty":          "",
		"bcrypt":         "$2a$10$abcdefghijklmnopqrstuu",
		"argon2i":        phc("argon2i", "v=19", "m=64,t=1,p=1", salt, key),
		"old version":    phc("argon2id", "v=16", "m=64,t=1,p=1", salt, key),
		"huge memory":    phc("argon2id", "v=19", "m=4194304,t=1,p=1", salt, key),
		"huge time":      phc("argon2id", "v=19", "m=64,t=1000,p=1", salt, key),
		"huge threads":   phc("argon2id", "v=19", "m=64,t=1,p=255", salt, key),
		"zero threads":   phc("argon2id", "v=19", "m=64,t=1,p=0", salt, key),
		"zero time":      phc("argon2id", "v=19", "m=64,t=0,p=1", salt, key),
		"param order":    phc("argon2id", "v=19", "t=1,m=64,p=1", salt, key),
		"extra param":    phc("argon2id", "v=19", "m=64,t=1,p=1,x=2", salt, key),
		"negative":       phc("argon2id", "v=19", "m=-64,t=1,p=1", salt, key),
		"bad salt":       phc("argon2id", "v=19", "m=64,t=1,p=1", "!!!", key),
		"short salt":     phc("argon2id", "v=19", "m=64,t=1,p=1", "AAAA", key),
		"short key":      phc("argon2id", "v=19", "m=64,t=1,p=1", salt, "AAAA"),
		"padded base64":  phc("argon2id", "v=19", "m=64,t=1,p=1", salt+"==", key),
		"trailing field": phc("argon2id", "v=19", "m=64,t=1,p=1", salt, key) + "$x",
		"too long":       phc("argon2id", "v=19", "m=64,t=1,p=1", salt, strings.Repeat("A", 600)),
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			ok, err := VerifyPassword(h, "pw")
			if ok || !errors.Is(err, ErrBadHash) {
				t.Fatalf("VerifyPassword(%q) = %v, %v; want false, ErrBadHash", h, ok, err)
			}
		})
	}
}

func BenchmarkVerifyPasswordDefault(b *testing.B) {
	h, err := HashPassword("benchmark password")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, _ := VerifyPassword(h, "benchmark password"); !ok {
			b.Fatal("verify failed")
		}
	}
}

func BenchmarkDummyVerify(b *testing.B) {
	for b.Loop() {
		DummyVerify("benchmark password")
	}
}
