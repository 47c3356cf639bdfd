package auth

import (
	"fmt"
	"testing"
	"time"
)

func TestLimiterSlowsThenBlocks(t *testing.T) {
	l := NewLoginLimiter(LimiterOptions{})
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	var delays []time.Duration
	for i := range 10 {
		d, r := l.Check("192.0.2.7", "ann", now)
		if r != 0 {
			t.Fatalf("refused after %d failures (retry %v)", i, r)
		}
		delays = append(delays, d)
		l.Failure("192.0.2.7", "ann", now)
		now = now.Add(time.Second)
	}
	for i, d := range delays {
		switch {
		case i < 5 && d != 0:
			t.Errorf("delay after %d failures = %v, want 0", i, d)
		case i >= 5 && d <= 0:
			t.Errorf("no delay after %d failures", i)
		case i > 5 && d < delays[i-1]:
			t.Errorf("delay shrank: %v after %v", d, delays[i-1])
		}
	}
	if delays[6] <= delays[5] {
		t.Errorf("delay does not grow: %v", delays)
	}
	_, r := l.Check("192.0.2.7", "ann", now)
	if r <= 0 || r > 15*time.Minute {
		t.Fatalf("after 10 failures retryAfter = %v, want (0, 15m]", r)
	}
	// The account is blocked from any address; the address only slows an
	// account it never touched (TestLimiterSparesUntouchedAccounts).
	if _, r := l.Check("198.51.100.1", "ann", now); r <= 0 {
		t.Error("account not blocked from another address")
	}
	if d, r := l.Check("192.0.2.7", "bob", now); r != 0 || d != 8*time.Second {
		t.Errorf("untouched account behind the blocked address: delay %v retry %v, want 8s 0", d, r)
	}
	l.Success("192.0.2.7", "bob", now)
	if d, r := l.Check("198.51.100.1", "bob", now); d != 0 || r != 0 {
		t.Errorf("unrelated pair limited: %v %v", d, r)
	}
	// The block ends.
	now = now.Add(r)
	if d, r := l.Check("192.0.2.7", "ann", now); d != 0 || r != 0 {
		t.Errorf("after the block: delay %v retry %v, want 0 0", d, r)
	}
}

func TestLimiterSuccessResetsAccountOnly(t *testing.T) {
	l := NewLoginLimiter(LimiterOptions{SlowAfter: 2, BlockAfter: 4})
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for range 3 {
		l.Failure("192.0.2.7", "ann", now)
	}
	l.Success("192.0.2.7", "ann", now)
	if d, _ := l.Check("198.51.100.1", "ann", now); d != 0 {
		t.Errorf("account still slowed after success: %v", d)
	}
	if d, _ := l.Check("192.0.2.7", "bob", now); d == 0 {
		t.Error("success reset the address too")
	}
}

func TestLimiterWindowForgets(t *testing.T) {
	l := NewLoginLimiter(LimiterOptions{SlowAfter: 2, BlockAfter: 100, Window: time.Minute})
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for range 5 {
		l.Failure("192.0.2.7", "", now)
	}
	if d, _ := l.Check("192.0.2.7", "", now); d == 0 {
		t.Fatal("not slowed")
	}
	now = now.Add(time.Minute)
	if d, _ := l.Check("192.0.2.7", "", now); d != 0 {
		t.Errorf("still slowed after the window: %v", d)
	}
	now = now.Add(time.Minute)     // that Check was an attempt; let it go stale too
	l.Failure("10.0.0.1", "", now) // sweeps the stale entry
	if n := l.Len(); n != 1 {
		t.Errorf("tracked keys = %d, want 1 after sweep", n)
	}
}

func TestLimiterIPv6Per64(t *testing.T) {
	l := NewLoginLimiter(LimiterOptions{SlowAfter: 1, BlockAfter: 3})
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		l.Failure(fmt.Sprintf("2001:db8:1:2::%x", i+1), "", now)
	}
	if _, r := l.Check("[2001:db8:1:2:ffff::1]:443", "", now); r <= 0 {
		t.Error("addresses in one /64 are not counted together")
	}
	if _, r := l.Check("2001:db8:1:3::1", "", now); r != 0 {
		t.Error("another /64 is blocked")
	}
	l.Failure("::ffff:192.0.2.9", "", now)
	if d, _ := l.Check("192.0.2.9", "", now); d == 0 {
		t.Error("IPv4-mapped address not unmapped")
	}
}

func TestLimiterMemoryBounded(t *testing.T) {
	l := NewLoginLimiter(LimiterOptions{MaxKeys: 100})
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for i := range 1000 {
		l.Failure(fmt.Sprintf("10.0.%d.%d", i/256, i%256), fmt.Sprint("user", i), now)
		if n := l.Len(); n > 100 {
			t.Fatalf("tracking %d keys, cap 100", n)
		}
	}
	// The newest keys are the ones kept.
	for range 5 {
		l.Failure("10.0.3.231", "", now) // i = 999
	}
	if d, _ := l.Check("10.0.3.231", "", now); d == 0 {
		t.Error("newest key evicted")
	}
	if d, _ := l.Check("", "user0", now); d != 0 {
		t.Error("oldest key not evicted")
	}
	// Checks (which record attempts in flight) are bounded too.
	for i := range 500 {
		l.Check(fmt.Sprint("172.16.", i/256, ".", i%256), fmt.Sprint("x", i), now)
		if n := l.Len(); n > 100 {
			t.Fatalf("tracking %d keys after Check, cap 100", n)
		}
	}
}

// TestLimiterCountsAttemptsInFlight: a burst of parallel logins is limited
// before any of them has failed.
func TestLimiterCountsAttemptsInFlight(t *testing.T) {
	l := NewLoginLimiter(LimiterOptions{})
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	allowed := 0
	for range 50 {
		d, r := l.Check("192.0.2.7", "victim", now)
		if r > 0 {
			if r > time.Minute {
				t.Errorf("in-flight refusal retryAfter = %v, want short", r)
			}
			continue
		}
		if allowed >= 5 && d == 0 {
			t.Errorf("attempt %d in flight not slowed", allowed)
		}
		allowed++
	}
	if allowed != 10 {
		t.Fatalf("%d parallel attempts allowed, want 10 (BlockAfter)", allowed)
	}
	// They all fail: now the real block applies, for the whole window.
	for range allowed {
		l.Failure("192.0.2.7", "victim", now)
	}
	if _, r := l.Check("192.0.2.7", "victim", now); r < 10*time.Minute {
		t.Errorf("after 10 failures retryAfter = %v, want the window", r)
	}
	if _, r := l.Check("192.0.2.7", "", now); r < 10*time.Minute {
		t.Errorf("after 10 failures, no account: retryAfter = %v, want the window", r)
	}

	// Attempts abandoned between Check and Failure/Success lapse.
	l2 := NewLoginLimiter(LimiterOptions{PendingTTL: time.Minute})
	for range 10 {
		l2.Check("198.51.100.1", "", now)
	}
	if _, r := l2.Check("198.51.100.1", "", now); r == 0 {
		t.Fatal("11th attempt in flight allowed")
	}
	if d, r := l2.Check("198.51.100.1", "", now.Add(time.Minute)); d != 0 || r != 0 {
		t.Errorf("abandoned attempts still count: delay %v retry %v", d, r)
	}
	// Success settles the address's attempt without counting a failure.
	l3 := NewLoginLimiter(LimiterOptions{SlowAfter: 2, BlockAfter: 3})
	for range 20 {
		if _, r := l3.Check("203.0.113.5", "ann", now); r != 0 {
			t.Fatal("sequential successful logins were refused")
		}
		l3.Success("203.0.113.5", "ann", now)
	}
}

// TestLimiterSparesUntouchedAccounts: an address blocked for failures on
// made-up names (everyone behind one proxy) does not lock out an account
// it never touched: the attempt passes after MaxDelay, at most Spared at a
// time; an account that failed is refused like before (issue 14, point 5).
func TestLimiterSparesUntouchedAccounts(t *testing.T) {
	l := NewLoginLimiter(LimiterOptions{Spared: 2})
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	const proxy = "127.0.0.1"
	for i := range 10 {
		user := fmt.Sprint("made-up-", i)
		if _, r := l.Check(proxy, user, now); r > 0 {
			t.Fatalf("attempt %d refused", i)
		}
		l.Failure(proxy, user, now)
	}
	if _, r := l.Check(proxy, "made-up-0", now); r < 10*time.Minute {
		t.Fatalf("a failed account behind the blocked address: retryAfter %v, want the window", r)
	}
	d, r := l.Check(proxy, "alice", now)
	if r != 0 || d != 8*time.Second {
		t.Fatalf("an untouched account behind the blocked address: delay %v retry %v, want 8s and 0", d, r)
	}
	if d, r := l.Check(proxy, "bob", now); r != 0 || d == 0 {
		t.Fatalf("second spared attempt: delay %v retry %v", d, r)
	}
	if _, r := l.Check(proxy, "carol", now); r != time.Second {
		t.Fatalf("third spared attempt in flight: retry %v, want 1s", r)
	}
	if _, r := l.Check(proxy, "alice", now); r == 0 {
		t.Fatal("a second attempt on alice while hers is in flight was let through")
	}
	l.Success(proxy, "alice", now)
	l.Failure(proxy, "bob", now) // bob's guess was wrong: bob is touched now
	if d, r := l.Check(proxy, "alice", now); r != 0 || d != 8*time.Second {
		t.Fatalf("alice again after her success: delay %v retry %v", d, r)
	}
	l.Success(proxy, "alice", now)
	if _, r := l.Check(proxy, "bob", now); r == 0 {
		t.Fatal("bob, who failed from the blocked address, was let through")
	}
}

// Attempts another node let through count here as in flight until their
// outcome comes; failures it counted block here as this node's own would,
// a success elsewhere clears the account, and none of it settles an
// attempt this node has in flight.
func TestLimiterElsewhere(t *testing.T) {
	l := NewLoginLimiter(LimiterOptions{SlowAfter: 100, BlockAfter: 4})
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for range 2 {
		l.Failure("192.0.2.7", "ann", now)
	}
	if _, r := l.Check("192.0.2.8", "ann", now); r != 0 {
		t.Fatalf("refused after 2 failures: retry %v", r)
	}
	l.Elsewhere("198.51.100.1", "ann", Started, now) // with the one in flight here: 4
	if _, r := l.Check("192.0.2.9", "ann", now); r == 0 {
		t.Error("2 failures, one attempt in flight here and one elsewhere: not refused")
	}
	l.Elsewhere("198.51.100.1", "ann", Failed, now) // settles the one elsewhere
	l.Cancel("192.0.2.8", "ann", now)
	if _, r := l.Check("192.0.2.9", "ann", now); r != 0 {
		t.Errorf("3 failures, none in flight: refused (retry %v); the failure elsewhere settled the attempt here?", r)
	}
	l.Cancel("192.0.2.9", "ann", now)
	l.Elsewhere("198.51.100.1", "ann", Started, now)
	l.Elsewhere("198.51.100.1", "ann", Failed, now)
	if _, r := l.Check("192.0.2.10", "ann", now); r <= time.Second {
		t.Errorf("4 failures, the last elsewhere: retry %v, want the block", r)
	}
	l.Elsewhere("198.51.100.1", "cy", Failed, now)
	l.Elsewhere("198.51.100.1", "cy", Failed, now)
	if _, r := l.Check("198.51.100.1", "", now); r == 0 {
		t.Error("4 failures of an address elsewhere: not blocked here")
	}
	l.Elsewhere("198.51.100.1", "ann", Succeeded, now)
	if _, r := l.Check("192.0.2.10", "ann", now); r != 0 {
		t.Errorf("a success elsewhere did not clear the account: retry %v", r)
	}
	// An attempt elsewhere whose outcome never comes (its node died)
	// stops counting after PendingTTL.
	l.Cancel("192.0.2.10", "ann", now)
	for range 4 {
		l.Elsewhere("203.0.113.5", "dee", Started, now)
	}
	if _, r := l.Check("192.0.2.11", "dee", now); r == 0 {
		t.Error("4 attempts in flight elsewhere: not refused")
	}
	if _, r := l.Check("192.0.2.11", "dee", now.Add(time.Minute)); r != 0 {
		t.Errorf("attempts elsewhere a minute old still count: retry %v", r)
	}
}

// A rate limiter's bucket is shared with the other nodes: what they
// allowed is taken here, and a debt from actions allowed at the same
// moment is paid back before the next one.
func TestRateLimiterTakenElsewhere(t *testing.T) {
	l := NewRateLimiter(1, 3, 10) // 3 at once, then one a second
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	l.TakenElsewhere("a", now)
	l.TakenElsewhere("a", now)
	if ok, _ := l.Allow("a", now); !ok {
		t.Fatal("the third of a burst of 3 refused")
	}
	for range 5 {
		l.TakenElsewhere("a", now) // two nodes allowed at once: down to -3, no further
	}
	ok, retry := l.Allow("a", now)
	if ok || retry != 4*time.Second {
		t.Errorf("in debt of 3: allowed %v, retry %v; want refused, 4s", ok, retry)
	}
	if ok, _ := l.Allow("a", now.Add(4*time.Second)); !ok {
		t.Error("the debt is paid after 4 s: refused")
	}
	if ok, _ := l.Allow("b", now); !ok {
		t.Error("another key was charged")
	}
}
