package auth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/khadga/khadga/signaling/store"
)

// Ticket defaults.
const (
	DefaultTicketTTL   = 30 * time.Second
	DefaultMaxTicket   = 100_000
	DefaultTicketsUser = 8
	DefaultTicketsAddr = 64
	ticketBytes        = 32
)

var (
	// ErrTooManyTickets is returned by Issue when MaxTickets unexpired
	// tickets exist. Answer 503 and let the client retry.
	ErrTooManyTickets = errors.New("auth: too many outstanding websocket tickets")
	// ErrTicketQuota is returned by Issue when the user or the address
	// already holds its share of outstanding tickets. Answer 429: it
	// clears as they are redeemed or expire.
	ErrTicketQuota = errors.New("auth: too many outstanding websocket tickets for this user or address")
)

// TicketsOptions configures Tickets. Zero fields take the defaults.
type TicketsOptions struct {
	TTL        time.Duration    // default DefaultTicketTTL
	MaxTickets int              // default DefaultMaxTicket
	PerUser    int              // outstanding tickets one user may hold; default DefaultTicketsUser
	PerAddr    int              // outstanding tickets one address (IPv6 /64) may hold; default DefaultTicketsAddr
	Now        func() time.Time // clock for Issue; default time.Now
	// Recheck, if set, runs on a ticket's claims when it is redeemed and
	// may refuse them or bring them up to date (the account may have been
	// disabled, or its role changed, since the ticket was issued).
	Recheck func(Claims) (Claims, error)
}

// Tickets hands out single-use, short-lived WebSocket tickets. A client
// that holds an access token POSTs for a ticket and puts it in the
// WebSocket URL, so the long-lived credential never appears in a URL that
// proxies may log. Tickets live in memory only. A client needs one ticket
// per connection, so each user and each address may hold only a few
// unredeemed ones: one user cannot fill the table and lock every browser
// out. Safe for concurrent use.
type Tickets struct {
	opts TicketsOptions

	mu      sync.Mutex
	live    map[string]ticket
	queue   []queued // issue order, so expiry order: the TTL is fixed
	head    int      // first unswept element of queue
	perUser map[string]int
	perAddr map[string]int
}

type ticket struct {
	claims  Claims
	addr    string // addrKey of the client it was issued to
	expires time.Time
}

type queued struct {
	id      string
	expires time.Time
}

// NewTickets returns an empty ticket table.
func NewTickets(opts TicketsOptions) *Tickets {
	if opts.TTL <= 0 {
		opts.TTL = DefaultTicketTTL
	}
	if opts.MaxTickets <= 0 {
		opts.MaxTickets = DefaultMaxTicket
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PerUser <= 0 {
		opts.PerUser = DefaultTicketsUser
	}
	if opts.PerAddr <= 0 {
		opts.PerAddr = DefaultTicketsAddr
	}
	return &Tickets{opts: opts, live: make(map[string]ticket),
		perUser: make(map[string]int), perAddr: make(map[string]int)}
}

// Issue returns a new ticket (32 random bytes, base64url) for a client at
// addr that redeems to c once within the TTL. ErrTicketQuota when c.User or
// addr holds its share of unredeemed tickets, ErrTooManyTickets when the
// table is full.
func (t *Tickets) Issue(c Claims, addr string) (string, error) {
	now := t.opts.Now()
	ak := addrKey(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep(now)
	if t.perUser[c.User] >= t.opts.PerUser || t.perAddr[ak] >= t.opts.PerAddr {
		return "", ErrTicketQuota
	}
	// Redeemed tickets stay queued until they expire; counting the queue
	// bounds memory even when tickets are redeemed at once.
	if len(t.queue)-t.head >= t.opts.MaxTickets {
		return "", ErrTooManyTickets
	}
	id := randomString(ticketBytes)
	exp := now.Add(t.opts.TTL)
	t.live[id] = ticket{claims: c, addr: ak, expires: exp}
	t.perUser[c.User]++
	t.perAddr[ak]++
	t.queue = append(t.queue, queued{id: id, expires: exp})
	return id, nil
}

// drop removes a live ticket and its counts.
func (t *Tickets) drop(id string, tk ticket) {
	delete(t.live, id)
	decr(t.perUser, tk.claims.User)
	decr(t.perAddr, tk.addr)
}

func decr(m map[string]int, k string) {
	if m[k]--; m[k] <= 0 {
		delete(m, k)
	}
}

// Redeem consumes the ticket and returns its claims, or false if it is
// unknown, already used or expired at now, or Recheck refused it.
func (t *Tickets) Redeem(id string, now time.Time) (Claims, bool) {
	c, err := t.RedeemChecked(id, now)
	return c, err == nil
}

// RedeemChecked is Redeem, saying why it failed: an error wrapping
// ErrTokenInvalid when the ticket is unknown, used or expired, else
// Recheck's error. When that error is the store's being unavailable
// (store.ErrUnavailable or store.ErrConflict) the ticket is left unspent:
// nothing was decided, and the client may try again with it.
func (t *Tickets) RedeemChecked(id string, now time.Time) (Claims, error) {
	invalid := fmt.Errorf("%w: unknown, used or expired ticket", ErrTokenInvalid)
	if len(id) != base64.RawURLEncoding.EncodedLen(ticketBytes) {
		return Claims{}, invalid
	}
	if t.opts.Recheck == nil {
		c, ok := t.take(id, now)
		if !ok {
			return Claims{}, invalid
		}
		return c, nil
	}
	c, ok := t.peek(id, now)
	if !ok {
		return Claims{}, invalid
	}
	c, err := t.opts.Recheck(c) // outside the lock: it may read the store
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrConflict) {
		return Claims{}, err
	}
	if _, ok := t.take(id, now); !ok {
		return Claims{}, invalid // another redeem spent it meanwhile
	}
	if err != nil {
		return Claims{}, err
	}
	return c, nil
}

// peek returns the claims of the ticket if it is live at now, leaving it
// unspent.
func (t *Tickets) peek(id string, now time.Time) (Claims, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep(now)
	tk, ok := t.live[id]
	if !ok || !now.Before(tk.expires) {
		return Claims{}, false
	}
	return tk.claims, true
}

// take consumes the ticket and returns its claims if it was live at now.
func (t *Tickets) take(id string, now time.Time) (Claims, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep(now)
	tk, ok := t.live[id]
	if !ok {
		return Claims{}, false
	}
	t.drop(id, tk)
	if !now.Before(tk.expires) {
		return Claims{}, false
	}
	return tk.claims, true
}

// Len returns the number of unexpired, unredeemed tickets.
func (t *Tickets) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.live)
}

// sweep drops expired tickets from the front of the queue, then compacts
// the queue once half of it is dead.
func (t *Tickets) sweep(now time.Time) {
	for t.head < len(t.queue) && !now.Before(t.queue[t.head].expires) {
		if tk, ok := t.live[t.queue[t.head].id]; ok {
			t.drop(t.queue[t.head].id, tk)
		}
		t.queue[t.head] = queued{}
		t.head++
	}
	if t.head > 0 && t.head >= len(t.queue)/2 {
		t.queue = append(t.queue[:0], t.queue[t.head:]...)
		t.head = 0
	}
}
