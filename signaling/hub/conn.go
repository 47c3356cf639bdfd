package hub

import (
	"slices"
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
	// byte rate, joins and leaves, and abuse.
	tokens, bytes, rooms, abuse         float64
	tokensAt, bytesAt, roomsAt, abuseAt int64
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

// userCounts counts each user's open connections, and lists its sessions
// that wait for a resume, for Config.MaxConnsPerUser. Its lock is a leaf.
type userCounts struct {
	mu      sync.Mutex
	n       map[string]int
	waiting map[string][]*session // oldest first; entries no longer awaiting are stale
}

func newUserCounts() *userCounts {
	return &userCounts{n: make(map[string]int), waiting: make(map[string][]*session)}
}

// wait lists s, whose socket went away, as waiting for a resume: once,
// though a session that resumed and dropped again has an entry already.
// A session that stopped waiting before this runs (another node took it:
// Hub.Release, which then unwaits it) is not listed: the caller sets
// awaiting under the session's lock, and calls wait after releasing it.
func (u *userCounts) wait(s *session) {
	u.mu.Lock()
	defer u.mu.Unlock()
	user := s.member.User
	w := slices.DeleteFunc(u.liveLocked(user), func(o *session) bool { return o == s })
	if s.awaiting.Load() {
		w = append(w, s)
	}
	u.setLocked(user, w)
}

// unwait takes s off its user's list: it has ended, or another node took
// it (Hub.Release). A stale entry would stay, and keep s in memory, until
// its user's list is next touched here, which for a user who never opens
// a session on this node again is never.
func (u *userCounts) unwait(s *session) {
	u.mu.Lock()
	defer u.mu.Unlock()
	user := s.member.User
	u.setLocked(user, slices.DeleteFunc(u.liveLocked(user), func(o *session) bool { return o == s }))
}

// evictable takes off user's list, and returns, its oldest waiting
// sessions beyond what limit leaves beside its open connections.
func (u *userCounts) evictable(user string, limit int) []*session {
	u.mu.Lock()
	defer u.mu.Unlock()
	w := u.liveLocked(user)
	n := min(u.n[user]+len(w)-limit, len(w))
	if n <= 0 {
		u.setLocked(user, w)
		return nil
	}
	out := slices.Clone(w[:n])
	u.setLocked(user, w[n:])
	return out
}

// total returns how many connections user has open and how many of its
// sessions wait for a resume.
func (u *userCounts) total(user string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n[user] + len(u.waiting[user]) // stale entries too: an upper bound
}

// snapshot returns how many connections user has open, and its sessions
// that wait for a resume, oldest first.
func (u *userCounts) snapshot(user string) (int, []*session) {
	u.mu.Lock()
	defer u.mu.Unlock()
	w := u.liveLocked(user)
	u.setLocked(user, w)
	return u.n[user], slices.Clone(w)
}

// liveLocked returns user's list without its stale entries.
func (u *userCounts) liveLocked(user string) []*session {
	return slices.DeleteFunc(u.waiting[user], func(o *session) bool { return !o.awaiting.Load() })
}

func (u *userCounts) setLocked(user string, w []*session) {
	if len(w) == 0 {
		delete(u.waiting, user)
		return
	}
	u.waiting[user] = w
}

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

// UserConns returns how many connections user has open, on every node of
// a cluster as far as this one knows, and the limit
// (Config.MaxConnsPerUser): the HTTP handler refuses an upgrade at the
// limit with a clear answer, and Accept enforces it in any case. Below
// the limit, and not near it, the other nodes' connections are not
// counted (farSessions walks the directory only near it).
func (h *Hub) UserConns(user string) (n, limit int) {
	return h.users.count(user) + h.farSessions(user, "").Open, h.cfg.MaxConnsPerUser
}

// TakesOver reports whether resumeToken resumes a session of user whose
// old connection is still open (the client saw the drop first), on this
// node or, in a cluster, another: the resume ends that connection, so
// the new one does not count against the user's limit. A user at the
// limit could not resume otherwise until the server noticed the old
// socket was dead, up to a minute later.
func (h *Hub) TakesOver(user, resumeToken string) bool {
	if h.takesOverHere(user, resumeToken) {
		return true
	}
	return resumeToken != "" && h.farSessions(user, resumeToken).TakesOver
}

// takesOverHere is TakesOver for the sessions of this node.
func (h *Hub) takesOverHere(user, resumeToken string) bool {
	if resumeToken == "" {
		return false
	}
	s, ok := h.tokens.get(hashToken(resumeToken))
	if !ok || s.member.User != user {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ended && s.conn != nil
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
