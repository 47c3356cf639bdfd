package hub

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/khadga/khadga/signaling/wsconn"
)

// conn is one WebSocket connection of a session. Its socket, send queue and
// goroutines belong to its wsconn.Conn; the hub only queues messages on it
// (never blocking) and handles what its reader reads (conn.Message, on the
// reader goroutine).
type conn struct {
	h        *Hub
	ws       *wsconn.Conn[queued]
	s        *session // set by attach before anyone else can see c
	key      string
	user     string
	presence bool

	// busy is when the handler now running started (unix nanoseconds), 0
	// when none runs: a handler never waits on another client, and tests
	// hold the hub to that (Hub.Stuck).
	busy atomic.Int64

	// Reader-only state: token buckets for the message rate, the signal
	// byte rate and abuse.
	tokens, bytes, abuse       float64
	tokensAt, bytesAt, abuseAt int64
}

func (c *conn) peer() string {
	if c.s == nil {
		return ""
	}
	return c.s.member.Peer
}

// send queues an answer to this connection's own client. The reader holds
// back while the queue is full (wsconn), so answers never overflow it; a
// client that stops reading altogether is dropped as a slow consumer.
func (c *conn) send(b []byte) {
	_ = c.ws.Send(queued{Envelope: Envelope{Msg: b, Kind: KindEvent}})
}

// userCounts counts each user's open connections, for
// Config.MaxConnsPerUser.
type userCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func newUserCounts() *userCounts { return &userCounts{n: make(map[string]int)} }

// add counts one more connection of user, unless that would exceed limit.
func (u *userCounts) add(user string, limit int) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.n[user] >= limit {
		return false
	}
	u.n[user]++
	return true
}

func (u *userCounts) remove(user string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.n[user] <= 1 {
		delete(u.n, user)
		return
	}
	u.n[user]--
}

// count is how many connections user has open.
func (u *userCounts) count(user string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n[user]
}

// UserConns returns how many connections user has open, and the limit
// (Config.MaxConnsPerUser): the HTTP handler refuses an upgrade at the
// limit with a clear answer, and Accept enforces it in any case.
func (h *Hub) UserConns(user string) (n, limit int) {
	return h.users.count(user), h.cfg.MaxConnsPerUser
}

// Stuck returns the peers whose message handler has been running since
// before t. A handler only queues and never waits on another client, so this
// is empty unless something is wrong; the stress tests watch it.
func (h *Hub) Stuck(t time.Time) []string {
	var stuck []string
	for _, c := range h.conns.collect(nil) {
		if b := c.busy.Load(); b != 0 && b < t.UnixNano() {
			stuck = append(stuck, c.peer())
		}
	}
	return stuck
}
