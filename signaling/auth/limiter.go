package auth

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// LimiterOptions configures a LoginLimiter. Zero fields take the defaults
// shown.
type LimiterOptions struct {
	SlowAfter  int           // failures before logins are slowed; default 5
	BlockAfter int           // failures before logins are refused; default 10
	Window     time.Duration // failures older than this are forgotten, and a block lasts this long; default 15m
	BaseDelay  time.Duration // delay at SlowAfter failures, doubling per extra failure; default 500ms
	MaxDelay   time.Duration // cap on the delay; default 8s
	MaxKeys    int           // tracked addresses+accounts; oldest evicted past it; default 100_000
	PendingTTL time.Duration // how long an unsettled Check counts as in flight; default 1m
	// Spared is how many attempts on untouched accounts (see LoginLimiter)
	// one blocked address may have in flight; default 2.
	Spared int
}

func (o *LimiterOptions) setDefaults() {
	if o.SlowAfter <= 0 {
		o.SlowAfter = 5
	}
	if o.BlockAfter <= 0 {
		o.BlockAfter = 10
	}
	if o.Window <= 0 {
		o.Window = 15 * time.Minute
	}
	if o.BaseDelay <= 0 {
		o.BaseDelay = 500 * time.Millisecond
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 8 * time.Second
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = 100_000
	}
	if o.PendingTTL <= 0 {
		o.PendingTTL = time.Minute
	}
	if o.Spared <= 0 {
		o.Spared = 2
	}
}

// LoginLimiter counts failed logins per client address and per account.
// After SlowAfter failures within Window a key earns a growing delay, and
// after BlockAfter it is refused until its block ends. A success clears the
// account's count but not the address's, so one valid account cannot be used
// to reset an address that is guessing at others. IPv6 addresses are
// counted per /64, since one host usually owns a whole /64.
//
// Attempts in flight count too: Check records one pending attempt per key,
// which the matching Failure or Success settles (or which lapses after
// PendingTTL if the handler gave up in between). Without this, a client
// firing many logins in parallel would have them all checked before the
// first failure was recorded.
//
// An address over its limit does not lock out accounts it never touched:
// behind a reverse proxy or a NAT many people share one address, and one of
// them failing logins for made-up names must not keep the others out. An
// attempt on an account with no failure, block or attempt in flight in the
// window gets through a blocked address, after MaxDelay and with at most
// Spared such attempts in flight per address. Someone spraying one
// password over many accounts from a blocked address so gets one guess per
// account and window, MaxDelay apart; an account that failed once is
// refused like before.
//
// Memory is bounded: at most MaxKeys keys are tracked, the least recently
// touched are evicted first, and stale keys are dropped as new attempts
// arrive. The clock is passed in so tests need no sleeps. Safe for
// concurrent use.
type LoginLimiter struct {
	opts LimiterOptions

	mu   sync.Mutex
	keys map[string]*list.Element // -> *limitEntry
	lru  list.List                // front = most recently touched
}

type limitEntry struct {
	key           string
	spared        int // attempts let through this blocked address (see Check)
	failures      int
	first         time.Time // first failure of the current window
	last          time.Time // last touched
	blockedUntil  time.Time
	pending       int       // attempts between Check and Failure/Success
	pendingExpiry time.Time // when unsettled attempts stop counting
	remote        int       // attempts in flight on other nodes (Elsewhere)
	remoteExpiry  time.Time // when they stop counting
}

// NewLoginLimiter returns a limiter with opts (defaults for zero fields).
func NewLoginLimiter(opts LimiterOptions) *LoginLimiter {
	opts.setDefaults()
	return &LoginLimiter{opts: opts, keys: make(map[string]*list.Element)}
}

// Check says how to treat a login attempt from addr for user, counting
// failures and attempts still in flight. If retryAfter > 0, refuse it
// (HTTP 429 with Retry-After) and do not call Failure or Success. Otherwise
// the attempt is recorded as in flight: wait delay (which may be 0), check
// the password, then call Failure or Success with the same addr and user.
func (l *LoginLimiter) Check(addr, user string, now time.Time) (delay, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	keys := l.keysFor(addr, user)
	var addrRetry time.Duration
	for _, k := range keys {
		d, r := l.verdict(k, now)
		if k == accountKey(user) && r > 0 {
			return 0, r
		}
		if k != accountKey(user) {
			addrRetry = r
		}
		delay = max(delay, d)
	}
	spare := false
	if addrRetry > 0 {
		if user == "" || l.touched(accountKey(user), now) {
			return 0, addrRetry
		}
		if spare = l.spare(addrKey(addr), now); !spare {
			return 0, time.Second
		}
		delay = l.opts.MaxDelay
	}
	for _, k := range keys {
		e := l.touch(k, now)
		e.pending++
		e.pendingExpiry = now.Add(l.opts.PendingTTL)
		if spare && k == addrKey(addr) {
			e.spared++
		}
	}
	return delay, 0
}

// touched reports whether key (an account) has failures, a block or an
// attempt in flight in the window.
func (l *LoginLimiter) touched(key string, now time.Time) bool {
	el, ok := l.keys[key]
	if !ok {
		return false
	}
	e := el.Value.(*limitEntry)
	return now.Before(e.blockedUntil) || l.pendingCount(e, now) > 0 || l.remoteCount(e, now) > 0 ||
		(e.failures > 0 && now.Sub(e.first) < l.opts.Window)
}

// spare reports whether the blocked address key may have one more attempt
// on an untouched account in flight.
func (l *LoginLimiter) spare(key string, now time.Time) bool {
	el, ok := l.keys[key]
	if !ok {
		return true
	}
	e := el.Value.(*limitEntry)
	if l.pendingCount(e, now) == 0 {
		e.spared = 0 // lapsed with the attempts in flight
	}
	return e.spared < l.opts.Spared
}

// Failure records a failed login from addr for user and settles the
// attempt Check recorded.
func (l *LoginLimiter) Failure(addr, user string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	for _, k := range l.keysFor(addr, user) {
		l.fail(k, now)
	}
}

// Success records a successful login: the account's failures are cleared
// and the address's in-flight attempt is settled.
func (l *LoginLimiter) Success(addr, user string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.keys[accountKey(user)]; ok {
		l.remove(el)
	}
	if addr == "" {
		return
	}
	if el, ok := l.keys[addrKey(addr)]; ok {
		settle(el.Value.(*limitEntry), now)
	}
}

// Outcome is what became of a login attempt, as another node of a
// cluster tells it (Elsewhere).
type Outcome int

const (
	Started   Outcome = iota // its Check let the attempt through: in flight there
	Failed                   // a wrong password or code
	Succeeded                // signed in
	Cancelled                // never decided (Cancel)
)

// Elsewhere records what another node of a cluster did with an attempt
// from addr for user, so that the nodes share one budget. An attempt it
// let through counts as in flight here too, until its outcome comes (or
// PendingTTL passes): guesses fired in parallel at several nodes are
// counted as one node counts them. A failure then counts as one here
// would, and a success clears user's failures. None settles an attempt
// of this node's own, whose Check recorded it.
func (l *LoginLimiter) Elsewhere(addr, user string, o Outcome, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	for _, k := range l.keysFor(addr, user) {
		e := l.touch(k, now)
		switch o {
		case Started:
			e.remote = l.remoteCount(e, now) + 1
			e.remoteExpiry = now.Add(l.opts.PendingTTL)
			continue
		case Failed:
			l.count(e, now)
		case Succeeded:
			if k == accountKey(user) {
				e.failures, e.first, e.blockedUntil = 0, time.Time{}, time.Time{}
			}
		}
		if e.remote > 0 {
			e.remote--
		}
	}
}

// Cancel settles an attempt Check recorded that was never decided (the
// server was too busy to check the password, or the client went away),
// counting neither a failure nor a success.
func (l *LoginLimiter) Cancel(addr, user string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range l.keysFor(addr, user) {
		if el, ok := l.keys[k]; ok {
			settle(el.Value.(*limitEntry), now)
		}
	}
}

// Len returns how many keys are tracked (for metrics and tests).
func (l *LoginLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

func (l *LoginLimiter) keysFor(addr, user string) []string {
	keys := make([]string, 0, 2)
	if addr != "" {
		keys = append(keys, addrKey(addr))
	}
	if user != "" {
		keys = append(keys, accountKey(user))
	}
	return keys
}

func accountKey(user string) string { return "u:" + user }

// addrKey normalises addr ("ip" or "ip:port") to an IPv4 address or an
// IPv6 /64. Anything unparsable is used verbatim.
func addrKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		ap, err2 := netip.ParseAddrPort(addr)
		if err2 != nil {
			return "a:" + addr
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return "a:" + p.String()
	}
	return "a:" + ip.String()
}

// verdict computes delay and refusal for one key. Attempts in flight
// count as failures; if they alone reach BlockAfter the client is told to
// retry in a second rather than blocked for the whole window.
func (l *LoginLimiter) verdict(key string, now time.Time) (delay, retryAfter time.Duration) {
	el, ok := l.keys[key]
	if !ok {
		return 0, 0
	}
	e := el.Value.(*limitEntry)
	if now.Before(e.blockedUntil) {
		return 0, e.blockedUntil.Sub(now)
	}
	n := l.pendingCount(e, now) + l.remoteCount(e, now)
	if now.Sub(e.first) < l.opts.Window {
		n += e.failures
	}
	switch {
	case n >= l.opts.BlockAfter:
		return 0, time.Second
	case n < l.opts.SlowAfter:
		return 0, 0
	}
	delay = l.opts.BaseDelay
	for i := l.opts.SlowAfter; i < n && delay < l.opts.MaxDelay; i++ {
		delay *= 2
	}
	return min(delay, l.opts.MaxDelay), 0
}

// remoteCount is how many attempts other nodes have in flight for e.
func (l *LoginLimiter) remoteCount(e *limitEntry, now time.Time) int {
	if !now.Before(e.remoteExpiry) {
		e.remote = 0
	}
	return e.remote
}

func (l *LoginLimiter) pendingCount(e *limitEntry, now time.Time) int {
	if !now.Before(e.pendingExpiry) {
		e.pending = 0
	}
	return e.pending
}

// settle ends one attempt in flight.
func settle(e *limitEntry, now time.Time) {
	if e.pending > 0 {
		e.pending--
	}
	if e.spared > e.pending {
		e.spared = e.pending
	}
	e.last = now
}

// touch returns the entry for key, creating it (and evicting the least
// recently touched entries past MaxKeys) if needed, and marks it used.
func (l *LoginLimiter) touch(key string, now time.Time) *limitEntry {
	if el, ok := l.keys[key]; ok {
		l.lru.MoveToFront(el)
		e := el.Value.(*limitEntry)
		e.last = now
		return e
	}
	e := &limitEntry{key: key, last: now}
	l.keys[key] = l.lru.PushFront(e)
	for len(l.keys) > l.opts.MaxKeys {
		l.remove(l.lru.Back())
	}
	return e
}

func (l *LoginLimiter) fail(key string, now time.Time) {
	e := l.touch(key, now)
	settle(e, now)
	l.count(e, now)
}

// count adds a failure to e, in a new window if the last one is over.
func (l *LoginLimiter) count(e *limitEntry, now time.Time) {
	if now.Sub(e.first) >= l.opts.Window && !now.Before(e.blockedUntil) {
		e.failures, e.first = 0, now // a new window
	}
	e.failures++
	if e.failures >= l.opts.BlockAfter && !now.Before(e.blockedUntil) {
		e.blockedUntil = now.Add(l.opts.Window)
	}
}

// sweep drops least recently touched entries that no longer matter. It
// stops at the first live one, so its cost is amortised over the failures
// that created the entries.
func (l *LoginLimiter) sweep(now time.Time) {
	for el := l.lru.Back(); el != nil; el = l.lru.Back() {
		e := el.Value.(*limitEntry)
		if now.Sub(e.last) < l.opts.Window || now.Before(e.blockedUntil) ||
			l.pendingCount(e, now) > 0 || l.remoteCount(e, now) > 0 {
			return
		}
		l.remove(el)
	}
}

func (l *LoginLimiter) remove(el *list.Element) {
	delete(l.keys, el.Value.(*limitEntry).key)
	l.lru.Remove(el)
}
