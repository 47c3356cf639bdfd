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
}

// LoginLimiter counts failed logins per client address and per account.
// After SlowAfter failures within Window a key earns a growing delay, and
// after BlockAfter it is refused until its block ends. A success clears the
// account's count but not the address's, so one valid account cannot be used
// to reset an address that is guessing at others. IPv6 addresses are
// counted per /64, since one host usually owns a whole /64.
//
// Memory is bounded: at most MaxKeys keys are tracked, the least recently
// touched are evicted first, and stale keys are dropped as new failures
// arrive. The clock is passed in so tests need no sleeps. Safe for
// concurrent use.
type LoginLimiter struct {
	opts LimiterOptions

	mu   sync.Mutex
	keys map[string]*list.Element // -> *limitEntry
	lru  list.List                // front = most recently touched
}

type limitEntry struct {
	key          string
	failures     int
	first        time.Time // first failure of the current window
	last         time.Time // last touched
	blockedUntil time.Time
}

// NewLoginLimiter returns a limiter with opts (defaults for zero fields).
func NewLoginLimiter(opts LimiterOptions) *LoginLimiter {
	opts.setDefaults()
	return &LoginLimiter{opts: opts, keys: make(map[string]*list.Element)}
}

// Check says how to treat a login attempt from addr for user. If
// retryAfter > 0, refuse it (HTTP 429 with Retry-After). Otherwise wait
// delay (which may be 0) before checking the password, without holding
// anything shared. Check does not record anything.
func (l *LoginLimiter) Check(addr, user string, now time.Time) (delay, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range l.keysFor(addr, user) {
		d, r := l.verdict(k, now)
		delay, retryAfter = max(delay, d), max(retryAfter, r)
	}
	if retryAfter > 0 {
		delay = 0
	}
	return delay, retryAfter
}

// Failure records a failed login from addr for user.
func (l *LoginLimiter) Failure(addr, user string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	for _, k := range l.keysFor(addr, user) {
		l.fail(k, now)
	}
}

// Success records a successful login: the account's failures are cleared.
func (l *LoginLimiter) Success(addr, user string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.keys[accountKey(user)]; ok {
		l.remove(e)
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

// verdict computes delay and refusal for one key.
func (l *LoginLimiter) verdict(key string, now time.Time) (delay, retryAfter time.Duration) {
	el, ok := l.keys[key]
	if !ok {
		return 0, 0
	}
	e := el.Value.(*limitEntry)
	if now.Before(e.blockedUntil) {
		return 0, e.blockedUntil.Sub(now)
	}
	if now.Sub(e.first) >= l.opts.Window || e.failures < l.opts.SlowAfter {
		return 0, 0
	}
	delay = l.opts.BaseDelay
	for i := l.opts.SlowAfter; i < e.failures && delay < l.opts.MaxDelay; i++ {
		delay *= 2
	}
	return min(delay, l.opts.MaxDelay), 0
}

func (l *LoginLimiter) fail(key string, now time.Time) {
	var e *limitEntry
	if el, ok := l.keys[key]; ok {
		e = el.Value.(*limitEntry)
		l.lru.MoveToFront(el)
	} else {
		e = &limitEntry{key: key, first: now}
		l.keys[key] = l.lru.PushFront(e)
		for len(l.keys) > l.opts.MaxKeys {
			l.remove(l.lru.Back())
		}
	}
	if now.Sub(e.first) >= l.opts.Window && !now.Before(e.blockedUntil) {
		e.failures, e.first = 0, now // a new window
	}
	e.failures++
	e.last = now
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
		if now.Sub(e.last) < l.opts.Window || now.Before(e.blockedUntil) {
			return
		}
		l.remove(el)
	}
}

func (l *LoginLimiter) remove(el *list.Element) {
	delete(l.keys, el.Value.(*limitEntry).key)
	l.lru.Remove(el)
}
