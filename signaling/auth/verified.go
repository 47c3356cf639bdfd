package auth

import (
	"crypto/sha256"
	"sync"
	"time"
)

// maxVerified bounds the verified-token cache: at most this many tokens,
// about 200 bytes each.
const maxVerified = 4096

// verifiedCache remembers access tokens whose signature and claims checked
// out, so that a token presented again (a reconnect, a resume, a second
// tab) costs a hash and a map lookup instead of an Ed25519 verification,
// about 50 µs and most of the CPU of opening a WebSocket. A hit still
// checks what can change: the token must not have expired and its key must
// not have been retired. When full, the cache is emptied; the next
// verifications refill it.
type verifiedCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]verifiedToken
}

type verifiedToken struct {
	claims Claims
	kid    string
}

// get returns the claims of token if it was verified before, is still
// within its lifetime (with leeway) at now, and kidOK accepts its key.
func (v *verifiedCache) get(token string, now time.Time, leeway time.Duration, kidOK func(string) bool) (Claims, bool) {
	key := sha256.Sum256([]byte(token))
	v.mu.Lock()
	e, ok := v.m[key]
	v.mu.Unlock()
	if !ok || !now.Before(e.claims.Expires.Add(leeway)) || !kidOK(e.kid) {
		return Claims{}, false
	}
	return e.claims, true
}

func (v *verifiedCache) put(token string, c Claims, kid string) {
	key := sha256.Sum256([]byte(token))
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil || len(v.m) >= maxVerified {
		v.m = make(map[[sha256.Size]byte]verifiedToken)
	}
	v.m[key] = verifiedToken{claims: c, kid: kid}
}
