package auth

import (
	"sync"
	"time"
)

// RateLimiter is a token bucket per key (a client address, a user): Allow
// takes one token from key's bucket, which holds at most burst and refills
// at rate per second. At most maxKeys buckets are kept: full buckets are
// dropped first (they mean nothing), then arbitrary ones. The clock is
// passed in so tests need no sleeps. Safe for concurrent use.
type RateLimiter struct {
	rate    float64
	burst   float64
	maxKeys int

	mu sync.Mutex
	m  map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewRateLimiter returns a limiter of burst tokens per key, refilled at
// rate per second, tracking at most maxKeys keys.
func NewRateLimiter(rate float64, burst, maxKeys int) *RateLimiter {
	return &RateLimiter{rate: rate, burst: float64(max(burst, 1)), maxKeys: max(maxKeys, 1), m: make(map[string]*bucket)}
}

// Allow takes a token for key at now. When there is none it returns false
// and how long until the next one.
func (l *RateLimiter) Allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key, now)
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// TakenElsewhere takes a token from key's bucket for an action another
// node of a cluster allowed, so that the nodes share one budget. The
// bucket may go into debt (down to -burst) when nodes allowed actions at
// the same moment: the debt is paid back before the next is allowed.
func (l *RateLimiter) TakenElsewhere(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key, now)
	b.tokens = max(b.tokens-1, -l.burst)
}

// Len is how many keys are tracked (for tests).
func (l *RateLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// bucket returns key's bucket, made full if new, refilled to now. l.mu is
// held.
func (l *RateLimiter) bucket(key string, now time.Time) *bucket {
	b, ok := l.m[key]
	if !ok {
		l.makeRoom(now)
		b = &bucket{tokens: l.burst, at: now}
		l.m[key] = b
	}
	l.refill(b, now)
	return b
}

func (l *RateLimiter) refill(b *bucket, now time.Time) {
	if now.After(b.at) {
		b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
		b.at = now
	}
}

// makeRoom drops buckets until a new key fits: full ones first.
func (l *RateLimiter) makeRoom(now time.Time) {
	if len(l.m) < l.maxKeys {
		return
	}
	for k, b := range l.m {
		if l.refill(b, now); b.tokens >= l.burst {
			delete(l.m, k)
		}
	}
	for k := range l.m {
		if len(l.m) < l.maxKeys {
			return
		}
		delete(l.m, k)
	}
}

// AddrKey is the key of a client address for per-address limits: the
// IPv4 address, or the IPv6 /64 (one host usually owns a whole /64).
func AddrKey(addr string) string { return addrKey(addr) }
