package auth

import (
	"encoding/base64"
	"errors"
	"sync"
	"time"
)

// Ticket defaults.
const (
	DefaultTicketTTL = 30 * time.Second
	DefaultMaxTicket = 100_000
	ticketBytes      = 32
)

// ErrTooManyTickets is returned by Issue when MaxTickets unexpired tickets
// exist. Answer 503 and let the client retry.
var ErrTooManyTickets = errors.New("auth: too many outstanding websocket tickets")

// TicketsOptions configures Tickets. Zero fields take the defaults.
type TicketsOptions struct {
	TTL        time.Duration    // default DefaultTicketTTL
	MaxTickets int              // default DefaultMaxTicket
	Now        func() time.Time // clock for Issue; default time.Now
}

// Tickets hands out single-use, short-lived WebSocket tickets. A client
// that holds an access token POSTs for a ticket and puts it in the
// WebSocket URL, so the long-lived credential never appears in a URL that
// proxies may log. Tickets live in memory only. Safe for concurrent use.
type Tickets struct {
	opts TicketsOptions

	mu    sync.Mutex
	live  map[string]ticket
	queue []queued // issue order, so expiry order: the TTL is fixed
	head  int      // first unswept element of queue
}

type ticket struct {
	claims  Claims
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
	return &Tickets{opts: opts, live: make(map[string]ticket)}
}

// Issue returns a new ticket (32 random bytes, base64url) that redeems to
// c once within the TTL. ErrTooManyTickets when the table is full.
func (t *Tickets) Issue(c Claims) (string, error) {
	now := t.opts.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep(now)
	// Redeemed tickets stay queued until they expire; counting the queue
	// bounds memory even when tickets are redeemed at once.
	if len(t.queue)-t.head >= t.opts.MaxTickets {
		return "", ErrTooManyTickets
	}
	id := randomString(ticketBytes)
	exp := now.Add(t.opts.TTL)
	t.live[id] = ticket{claims: c, expires: exp}
	t.queue = append(t.queue, queued{id: id, expires: exp})
	return id, nil
}

// Redeem consumes the ticket and returns its claims, or false if it is
// unknown, already used or expired at now.
func (t *Tickets) Redeem(id string, now time.Time) (Claims, bool) {
	if len(id) != base64.RawURLEncoding.EncodedLen(ticketBytes) {
		return Claims{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep(now)
	tk, ok := t.live[id]
	if !ok {
		return Claims{}, false
	}
	delete(t.live, id)
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
		delete(t.live, t.queue[t.head].id)
		t.queue[t.head] = queued{}
		t.head++
	}
	if t.head > 0 && t.head >= len(t.queue)/2 {
		t.queue = append(t.queue[:0], t.queue[t.head:]...)
		t.head = 0
	}
}
