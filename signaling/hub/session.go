package hub

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"sync/atomic"
	"time"

	"github.com/khadga/khadga/internal/bufpool"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/wsconn"
)

// session is one peer: its id, user, role and rooms. It outlives its
// connection by the resume window, so that a client whose socket dropped
// gets its peer id, rooms and queued messages back.
type session struct {
	h      *Hub
	member proto.Member // peer, user, role; immutable
	grants []string     // room grants from the token; empty means any

	// roomsMu guards rooms. Only the session's own reader and its end change
	// it; the signal path reads it.
	roomsMu sync.RWMutex
	rooms   map[string]*room

	// mu guards the fields below. A proxy (a session another node holds)
	// has only node, and ended.
	mu        sync.Mutex
	node      string   // the node that holds it, if another; "" if this one
	conn      *conn    // nil while the socket is away
	absent    []queued // messages kept while away, oldest first
	timer     *time.Timer
	tokenHash string // sha256 of the current resume token, raw bytes
	ended     bool
	// away is when the socket went away (unix nanoseconds), while the
	// session waits for a resume; 0 while it has a connection. It goes
	// to the other nodes of a cluster with the session's state
	// (SessionState.Away).
	away int64
	// login and keyID are the sign-in and signing key of the token of the
	// session's connection: the one that opened it, then the one of each
	// resume, so that signing out or retiring a key reaches the socket
	// that sign-in or key authenticated.
	login, keyID string

	// proxy mirrors node != "" for lock-free reads on the fan-out paths.
	proxy atomic.Bool
	// awaiting is set while the session waits for its client to resume
	// (its socket is away), so that userCounts can tell its list's stale
	// entries without s.mu. Set and cleared under s.mu.
	awaiting atomic.Bool
	// ordered is set, to the claim's number (Hub.claimSeq), when this node
	// claims the session from another, and cleared when Delivery.Order
	// says it is done: meanwhile signals from this node's sessions to it
	// are offered to Order first (relay). The number keeps a done that
	// raced with a newer claim from clearing that claim's. The claim sets
	// it under mu, as it makes the session local, so that relay, which
	// reads it with no lock, can look again under mu (deliverChecked).
	ordered atomic.Uint64
}

// local reports whether this node holds s (else it is a proxy).
func (s *session) local() bool { return !s.proxy.Load() }

// setNode makes s a proxy of node, or local when node is "". s.mu is held.
func (s *session) setNodeLocked(node string) {
	s.node = node
	s.proxy.Store(node != "")
}

// state is s's SessionState, for Delivery.Publish. s.roomsMu is held (read
// or write); it takes s.mu.
func (s *session) stateLocked() SessionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stateBothLocked()
}

// stateBothLocked is stateLocked with s.mu held as well.
func (s *session) stateBothLocked() SessionState {
	rooms := make([]string, 0, len(s.rooms))
	for name := range s.rooms {
		rooms = append(rooms, name)
	}
	st := SessionState{Member: s.member, Rooms: rooms, Grants: s.grants, Login: s.login, KeyID: s.keyID,
		TokenHash: []byte(s.tokenHash)}
	if s.away != 0 {
		st.Away = time.Unix(0, s.away)
	}
	return st
}

// publish tells the other nodes s's state. It takes s.roomsMu.
func (s *session) publish() {
	s.roomsMu.RLock()
	st := s.stateLocked()
	s.roomsMu.RUnlock()
	s.h.delivery.Publish(st)
}

// publishWaiting tells the other nodes that s waits for its client to
// resume, on the reader of the connection that went away. It holds
// s.roomsMu, exclusively, from taking the state to handing it over: no
// join or leave of a connection that resumed s meanwhile, and no Release
// to another node (a claim, which the client's next connection often is),
// comes between the two, so that this state is never handed over after a
// newer one, nor after s became another node's. And it publishes again,
// afresh, while s's socket came back or went away again since it took
// the state: the resume's own Publish may have been handed over before
// this one, which would then hide it.
func (s *session) publishWaiting() {
	for {
		s.roomsMu.Lock()
		s.mu.Lock()
		if s.ended || s.node != "" {
			s.mu.Unlock()
			s.roomsMu.Unlock()
			return
		}
		st := s.stateBothLocked()
		away := s.away
		s.mu.Unlock()
		s.h.delivery.Publish(st)
		s.roomsMu.Unlock()
		s.mu.Lock()
		settled := s.away == away
		s.mu.Unlock()
		if settled {
			return
		}
	}
}

// queued is one message in a send queue or an absent queue.
type queued struct {
	Envelope
	at  int64   // unix nanoseconds it was kept while the session was absent
	buf *[]byte // Msg's buffer, from bufpool; nil if Msg is not pooled
}

// keep makes e an entry that owns its message, for a queue. A borrowed
// message is copied into a buffer from bufpool, which the entry gives
// back once the writer has written it (Release). An entry that is dropped
// instead leaves its buffer to the collector. An entry lives in one queue
// at a time (a connection's, then maybe an absent queue, then a resumed
// connection's), so a buffer is given back once, by the one writer.
func keep(e Envelope) queued {
	if !e.Borrowed {
		return queued{Envelope: e}
	}
	bp := bufpool.Get()
	e.Msg = append((*bp)[:0], e.Msg...)
	e.Borrowed = false
	return queued{Envelope: e, buf: bp}
}

// Payload is the message's text (wsconn.Message).
func (q queued) Payload() []byte { return q.Msg }

// Release gives a pooled message buffer back (wsconn.Message): the writer
// calls it once the message is written, and nothing reads it after.
func (q queued) Release() {
	if q.buf != nil {
		bufpool.Put(q.buf, q.Msg)
	}
}

// randomID returns n random bytes, base64url without padding: safe in URLs
// and in proto's peer id alphabet.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return string(sum[:])
}

// newResumeToken replaces the session's resume token with a fresh one and
// returns it. Only its hash is kept.
func (h *Hub) newResumeToken(s *session) string {
	tok := randomID(32)
	hash := hashToken(tok)
	h.tokens.putIfAbsent(hash, s) // 256 random bits: a collision is not a concern
	s.mu.Lock()
	old := s.tokenHash
	s.tokenHash = hash
	s.mu.Unlock()
	if old != "" {
		h.tokens.deleteIf(old, func(v *session) bool { return v == s })
	}
	return tok
}

// deliver queues e on the session's connection, or in its absent queue
// while its socket is away, or hands it to Delivery for the node that holds
// a proxy's session. A signal is offered: a full queue refuses it, and its
// sender is told (the sender pays for a flood, not the receiver). Anything
// else is sent: a queue over twice its limits means the client is not
// reading, and its connection is dropped. None of it ever blocks.
// Lock order: session.mu, then the connection's (a leaf).
func (s *session) deliver(e Envelope) error {
	_, err := s.deliverHeld(e)
	return err
}

// deliverHeld is deliver that also reports whether e waits in the absent
// queue.
func (s *session) deliverHeld(e Envelope) (held bool, err error) {
	return s.deliverChecked(e, false)
}

// deliverChecked is deliverHeld. With unordered, e is a signal of this
// node's that relay found s not ordered for: if s is local and ordered
// now, a claim made it so since (Hub.claim sets both under s.mu), and e
// is not delivered: it gets errMustOrder.
func (s *session) deliverChecked(e Envelope, unordered bool) (held bool, err error) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return false, ErrUnknownPeer
	}
	if node := s.node; node != "" {
		s.mu.Unlock()
		return false, s.h.delivery.Deliver(node, s.member.Peer, e)
	}
	if unordered && s.ordered.Load() != 0 {
		s.mu.Unlock()
		return false, errMustOrder
	}
	if e.Kind == KindPresence && (s.conn == nil || !s.conn.presence) {
		s.mu.Unlock()
		return false, nil // presence is for subscribed connections only, and never kept
	}
	it := keep(e)
	if c := s.conn; c != nil {
		var err error
		if e.Kind == KindSignal {
			err = c.ws.Offer(it)
		} else {
			err = c.ws.Send(it)
		}
		if err != wsconn.ErrClosing {
			s.mu.Unlock()
			if err != nil {
				it.Release() // refused: never queued
				return false, ErrPeerUnavailable
			}
			if e.Kind == KindSignal {
				s.h.stats.signals.Add(1)
				s.h.stats.bytes.Add(uint64(len(e.Msg)))
			}
			return false, nil
		}
		// The connection is going away; keep the message for a resume.
	}
	it.Held = e.Seq != 0 // its node hears "held" from our answer
	expired, err := s.keepLocked(it, time.Now())
	s.mu.Unlock()
	s.h.reportDropped(s.member.Peer, expired)
	return err == nil, err
}

// keepLocked adds it to the absent queue, dropping expired entries first;
// it returns those for the caller to report once s.mu is released.
func (s *session) keepLocked(it queued, now time.Time) (expired []queued, err error) {
	if it.Kind == KindPresence {
		return nil, nil
	}
	if len(s.absent) >= s.h.cfg.AbsentQueue {
		expired = s.expireLocked(now)
	}
	if len(s.absent) >= s.h.cfg.AbsentQueue {
		return expired, ErrPeerUnavailable
	}
	it.at = now.UnixNano()
	s.absent = append(s.absent, it)
	if it.Kind == KindSignal {
		s.h.stats.queued.Add(1)
	}
	return expired, nil
}

// expireLocked removes queued messages older than the TTL and returns them.
func (s *session) expireLocked(now time.Time) []queued {
	cutoff := now.Add(-s.h.cfg.AbsentQueueTTL).UnixNano()
	n := 0
	for n < len(s.absent) && s.absent[n].at < cutoff {
		n++
	}
	if n == 0 {
		return nil
	}
	expired := append([]queued(nil), s.absent[:n]...)
	s.absent = append(s.absent[:0], s.absent[n:]...)
	return expired
}

// roomList returns the names of the session's rooms.
func (s *session) roomList() []string {
	s.roomsMu.RLock()
	defer s.roomsMu.RUnlock()
	names := make([]string, 0, len(s.rooms))
	for name := range s.rooms {
		names = append(names, name)
	}
	return names
}

// inRoom reports whether the session is in room.
func (s *session) inRoom(room string) bool {
	s.roomsMu.RLock()
	defer s.roomsMu.RUnlock()
	_, ok := s.rooms[room]
	return ok
}

// servedHere reports whether the session has neither ended nor gone to
// another node (Release): only then may its connection here change its
// rooms. A message its old connection was handling when that happened
// must not (the rooms of a released session are its new node's). Lock
// order: after roomsMu and room.mu, as session.mu.
func (s *session) servedHere() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ended && s.node == ""
}

// errEndedHere answers a request of a connection whose session ended or
// went to another node while the request was on its way.
const errEndedHere = "this session has ended here"

// isEnded reports whether s has ended.
func (s *session) isEnded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

// identity is the Identity of the session: of the token that opened it,
// with the sign-in and key of the last resume (or MoveLogin).
func (s *session) identity() Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Identity{User: s.member.User, Role: s.member.Role, Rooms: s.grants, Login: s.login, KeyID: s.keyID}
}

// granted reports whether the token allows joining room.
func (s *session) granted(room string) bool {
	if len(s.grants) == 0 {
		return true
	}
	for _, g := range s.grants {
		if g == room {
			return true
		}
	}
	return false
}
