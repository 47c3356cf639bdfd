package hub

import (
	"slices"
	"sync"
	"time"

	"github.com/khadga/khadga/proto"
)

// A revocation reaches the sessions the hub holds when it runs (Revoke),
// but a connection's credentials are checked against the store before its
// session exists: a connection checked just before a sign-out was written,
// whose session attached just after the hub ran the revocation, or a
// session claimed from another node while the revocation passed both
// (the old node holds a proxy by then, the new one nothing yet), would
// escape it and live for as long as its socket stays open. So the hub
// remembers its revocations for a while, and a connection that attaches
// ends at once if one made after its credentials were checked
// (Identity.Checked) matches its session. A move of a sign-in's sessions
// to another sign-in (MoveLogin, for a password change) is remembered the
// same way, so that such a connection is moved as it attaches and a later
// sign-out of the new sign-in ends it too. A change is recorded before
// the hub looks at its sessions, and a connection looks at the record
// after its session is in place: whichever comes second sees the other.
// A move checks the record too, for a revocation of the sign-in it moves
// to that came before it (onMove).

// revocationMemory is how long the hub remembers a revocation: more than
// any connection takes from its check against the store to its session
// (an upgrade, and a claim of at most a few seconds).
const revocationMemory = time.Minute

// maxRevocations bounds what the hub remembers; past it, the oldest are
// forgotten first.
const maxRevocations = 4096

type revocation struct {
	at     time.Time
	match  func(Identity) bool
	code   proto.Code
	reason string
	moveTo string // set for a move: the sign-in the matching sessions get, instead of ending
}

type revocations struct {
	mu   sync.Mutex
	list []revocation // oldest first
}

// add records r, made now: stamped under the lock, so that the list stays
// in the order of the stamps, which since and forget rely on.
func (l *revocations) add(r revocation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r.at = time.Now()
	l.forget(r.at.Add(-revocationMemory))
	if len(l.list) >= maxRevocations {
		l.list = l.list[1:]
	}
	l.list = append(l.list, r)
}

// forget drops what was made before t.
func (l *revocations) forget(t time.Time) {
	i := 0
	for i < len(l.list) && l.list[i].at.Before(t) {
		i++
	}
	if i > 0 {
		l.list = append(l.list[:0:0], l.list[i:]...)
	}
}

// since returns, oldest first, what was recorded at or after t.
func (l *revocations) since(t time.Time) []revocation {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := len(l.list)
	for i > 0 && !l.list[i-1].at.Before(t) {
		i--
	}
	if i == len(l.list) {
		return nil
	}
	return slices.Clone(l.list[i:])
}

// onMove returns a revocation that matches a session that just moved to
// another sign-in (MoveLogin) as it is now, id, and did not as it was,
// old: one of the new sign-in. It may have come first: a move and a
// sign-out reach a node on different subjects, which it handles on
// different goroutines, and from different nodes when another served the
// sign-out; it found nothing of the new sign-in to end then. The new
// sign-in is younger than the move, so whatever revoked it came after
// the move was made, however long ago it was recorded here.
func (l *revocations) onMove(old, id Identity) (revocation, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.list {
		if r.moveTo == "" && r.match(id) && !r.match(old) {
			return r, true
		}
	}
	return revocation{}, false
}

// revokedMeanwhile applies to c's session, just attached, what was
// recorded since c's credentials were checked, in order: a move changes
// its sign-in (which later revocations then see), a revocation ends it.
// It reports whether the session was ended.
func (h *Hub) revokedMeanwhile(c *conn, checked time.Time) bool {
	if checked.IsZero() {
		return false
	}
	for _, r := range h.revoked.since(checked) {
		id := c.s.identity()
		switch {
		case !r.match(id):
		case r.moveTo != "":
			if h.moveSession(c.s, id.Login, r.moveTo) && c.s.isEnded() {
				return true // a revocation of the sign-in it moved to came first
			}
		default:
			return h.revoke(c.s, r.code, r.reason)
		}
	}
	return false
}

// LocalIdentities returns the identity of every session this node holds
// that has not ended, for a check of their credentials against the store
// (a cluster node that may have missed revocations). Each session's lock
// is held only to copy its identity: the caller reads the store after,
// and ends what fails with Revoke.
func (h *Hub) LocalIdentities() []Identity {
	var out []Identity
	for _, s := range h.sessions.collect(nil) {
		if s.local() && !s.isEnded() {
			out = append(out, s.identity())
		}
	}
	return out
}
