package hub

import (
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/khadga/khadga/proto"
)

// room is a set of sessions that may signal each other. A room exists while
// it has members; the last one out marks it dead and removes it, and a join
// that finds a dead room looks it up again.
type room struct {
	name string
	// mu serialises changes of membership with the events they cause, so
	// that every member sees joins and leaves in one order.
	mu   sync.Mutex
	dead bool
	// users counts the sessions of each user in the room, under mu: the
	// member limit counts people, so that one user's sessions cannot
	// fill a room (issue 14, point 12).
	users map[string]int
	// members is replaced, never changed, under mu: the signal path reads
	// it without a lock, so signals never wait for a join's fan-out.
	members atomic.Pointer[map[string]*session] // by peer id
}

func newRoom(name string) *room {
	r := &room{name: name, users: make(map[string]int)}
	m := make(map[string]*session)
	r.members.Store(&m)
	return r
}

// has reports whether peer is a member.
func (r *room) has(peer string) bool {
	_, ok := (*r.members.Load())[peer]
	return ok
}

// set replaces the membership with a copy of m changed by f. r.mu is held.
func (r *room) set(f func(m map[string]*session)) map[string]*session {
	next := maps.Clone(*r.members.Load())
	f(next)
	r.members.Store(&next)
	return next
}

// join adds c's session to a room and answers joined; the other members get
// peer-joined.
func (h *Hub) join(c *conn, m *proto.Message) {
	s := c.s
	if !s.granted(m.Room) {
		c.replyError(m.ID, proto.CodeUnauthorized, "your token does not grant room %s", m.Room)
		return
	}
	limit, code, text := h.roomLimit(s, m)
	if code != "" {
		c.replyError(m.ID, code, "%s", text)
		return
	}
	s.roomsMu.Lock()
	code, reply := h.joinLocked(c, m, limit)
	s.roomsMu.Unlock()
	switch {
	case code != "":
		c.replyError(m.ID, code, "%s", reply)
	case reply != "":
		c.send([]byte(reply))
	}
}

// roomLimit asks Config.RoomPolicy whether s may join m.Room and how many
// people the room holds, before any lock is taken: the policy may read a
// store. A session already in the room is not asked again.
func (h *Hub) roomLimit(s *session, m *proto.Message) (int, proto.Code, string) {
	limit := h.cfg.MaxRoomMembers
	if h.cfg.RoomPolicy == nil || s.inRoom(m.Room) {
		return limit, "", ""
	}
	j, _ := m.JoinData() // Validate has checked it
	n, err := h.cfg.RoomPolicy(m.Room, s.identity(), j.Invite)
	var pe *proto.ProtocolError
	switch {
	case errors.As(err, &pe):
		return 0, pe.Code, pe.Message
	case err != nil:
		h.log.Error("hub: room policy", "room", m.Room, "err", err)
		return 0, proto.CodeInternal, "could not check the room's settings; try again"
	case n > 0 && n < limit:
		limit = n
	}
	return limit, "", ""
}

// joinLocked does the work of join with s.roomsMu held: limit is how many
// people the room holds. It returns an error code and text, or an answer
// to send once the lock is released (empty if it was queued already).
func (h *Hub) joinLocked(c *conn, m *proto.Message, limit int) (proto.Code, string) {
	s := c.s
	if r, ok := s.rooms[m.Room]; ok {
		// Joining again answers with the members present, which lets a
		// resumed client refresh its view.
		return "", string(joinedMsg(m.ID, m.Room, membersExcept(r, s)))
	}
	if !s.servedHere() {
		// Revoked while the join was on its way (RoomPolicy may read a
		// store): leaveAll has run, and would never take it out again.
		return proto.CodeRevoked, errEndedHere
	}
	if len(s.rooms) >= h.cfg.MaxRoomsPerSession {
		return proto.CodeTooManyRooms, fmt.Sprintf("a session may be in at most %d rooms", h.cfg.MaxRoomsPerSession)
	}
	for {
		r, created := h.rooms.getOrCreate(m.Room, func() *room { return newRoom(m.Room) })
		if created {
			h.stats.rooms.Add(1)
		}
		r.mu.Lock()
		if r.dead {
			r.mu.Unlock()
			continue
		}
		if r.users[s.member.User] == 0 && len(r.users) >= limit {
			r.mu.Unlock()
			return proto.CodeRoomFull, fmt.Sprintf("room %s is full (%d people)", m.Room, limit)
		}
		// Answer and announce under the room lock, so that every member
		// sees joins and leaves in one order, and the joiner gets joined
		// before any signal sent in answer to peer-joined. Nothing here
		// waits: a joiner whose queue is full is a slow consumer.
		c.send(joinedMsg(m.ID, m.Room, membersExcept(r, s)))
		h.addMemberLocked(r, s)
		r.mu.Unlock()
		if s.rooms == nil {
			s.rooms = make(map[string]*room)
		}
		s.rooms[m.Room] = r
		h.delivery.Publish(s.stateLocked())
		return "", ""
	}
}

// addMemberLocked makes s a member of r and tells r's members on this node
// (each other node tells its own, when it learns of the join). s is a
// member before anyone hears of it, so that a member who answers
// peer-joined at once finds it in the room. r.mu and s.roomsMu are held,
// and s.rooms does not hold r yet.
func (h *Hub) addMemberLocked(r *room, s *session) {
	if hook := h.testHookAddingMember.Load(); hook != nil {
		(*hook)(r.name, s.member.Peer)
	}
	r.users[s.member.User]++ // sessions on other nodes count too
	h.stats.members.Add(1)
	ev := memberMsg(proto.TypePeerJoined, r.name, s.member)
	h.setMembers(r, s, true, ev, func(m map[string]*session) { m[s.member.Peer] = s })
}

// leave takes c's session out of a room and acks.
func (h *Hub) leave(c *conn, m *proto.Message) {
	s := c.s
	s.roomsMu.Lock()
	if !s.servedHere() {
		s.roomsMu.Unlock()
		c.replyError(m.ID, proto.CodeRevoked, "%s", errEndedHere)
		return
	}
	r, ok := s.rooms[m.Room]
	if ok {
		delete(s.rooms, m.Room)
		h.removeMember(r, s)
	}
	var st SessionState
	if ok {
		st = s.stateLocked()
	}
	s.roomsMu.Unlock()
	if !ok {
		c.replyError(m.ID, proto.CodeNotInRoom, "you are not in room %s", m.Room)
		return
	}
	h.delivery.Publish(st)
	c.send(refMsg(proto.TypeAck, m.ID))
}

// leaveAll takes an ending session out of every room.
func (h *Hub) leaveAll(s *session) {
	s.roomsMu.Lock()
	defer s.roomsMu.Unlock()
	for name, r := range s.rooms {
		delete(s.rooms, name)
		h.removeMember(r, s)
	}
}

// removeMember deletes s from r, tells r's members on this node, and
// removes r when it is empty. Lock order: s.roomsMu (held by the caller),
// r.mu, then the shard lock of h.rooms.
func (h *Hub) removeMember(r *room, s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.has(s.member.Peer) {
		return
	}
	if r.users[s.member.User]--; r.users[s.member.User] <= 0 {
		delete(r.users, s.member.User)
	}
	h.stats.members.Add(-1)
	ev, _ := (&proto.Message{Type: proto.TypePeerLeft, Room: r.name,
		Data: mustJSON(proto.PeerLeft{Peer: s.member.Peer})}).Encode()
	members := h.setMembers(r, s, false, ev, func(m map[string]*session) { delete(m, s.member.Peer) })
	if len(members) == 0 {
		r.dead = true
		if h.rooms.deleteIf(r.name, func(v *room) bool { return v == r }) {
			h.stats.rooms.Add(-1)
		}
	}
}

// setMembers changes r's membership with f (s joined, or s left), tells
// r's other members on this node with ev (each other node tells its own),
// and, in rooms scope, tells the presence feed which views that changes
// (roomPresenceLocked). In rooms scope all of it happens under
// presence.mu, so that the memberships each change reads are those of
// the changes before it: two sessions that each join a room the other is
// in at once would otherwise each find the other's join done already,
// take it for another shared room, and neither would tell of the other.
// A member hears of the change before its view does. r.mu and s.roomsMu
// are held, and s.rooms does not hold r. It returns the new membership.
func (h *Hub) setMembers(r *room, s *session, joined bool, ev []byte, f func(m map[string]*session)) map[string]*session {
	rooms := h.cfg.PresenceScope == proto.ScopeRooms
	p := h.presence
	if rooms {
		p.mu.Lock()
		defer p.mu.Unlock()
	}
	members := r.set(f)
	changed := false
	for _, o := range members {
		if o == s {
			continue
		}
		if o.local() {
			_ = o.deliver(Envelope{Msg: ev, Kind: KindEvent})
		}
		if rooms && h.roomPresenceLocked(s, o, r, joined) {
			changed = true
		}
	}
	if changed {
		p.armLocked(max(h.cfg.PresenceInterval-time.Since(p.lastFlush), 0))
	}
	return members
}

// roomPresenceLocked records for the presence feed (rooms scope) that s
// and o now see each other (s joined r) or no longer do (s left r),
// unless they share another room, and reports whether it recorded
// anything. Each node tells its own sessions' views. presence.mu is held
// (setMembers).
func (h *Hub) roomPresenceLocked(s, o *session, r *room, joined bool) bool {
	if !s.local() && !o.local() {
		return false
	}
	for name, r2 := range s.rooms {
		if name != r.name && r2.has(o.member.Peer) {
			return false
		}
	}
	if o.local() {
		h.presence.roomChangeLocked(o.member.Peer, s.member, joined)
	}
	if s.local() {
		h.presence.roomChangeLocked(s.member.Peer, o.member, joined)
	}
	return true
}

// shareRoom reports whether s and peer share a room (room, if it is set).
// It is on the signal path: map reads under read locks, nothing global.
func (h *Hub) shareRoom(s *session, peer, room string) bool {
	s.roomsMu.RLock()
	defer s.roomsMu.RUnlock()
	if room != "" {
		r := s.rooms[room]
		return r != nil && r.has(peer)
	}
	for _, r := range s.rooms {
		if r.has(peer) {
			return true
		}
	}
	return false
}

// membersExcept lists r's members other than s.
func membersExcept(r *room, s *session) []proto.Member {
	members := *r.members.Load()
	peers := make([]proto.Member, 0, len(members))
	for _, o := range members {
		if o != s {
			peers = append(peers, o.member)
		}
	}
	return peers
}

func joinedMsg(ref, room string, peers []proto.Member) []byte {
	m := proto.Message{Type: proto.TypeJoined, Ref: ref, Room: room, Data: mustJSON(proto.Joined{Peers: peers})}
	b, _ := m.Encode()
	return b
}

func memberMsg(typ, room string, member proto.Member) []byte {
	m := proto.Message{Type: typ, Room: room, Data: mustJSON(member)}
	b, _ := m.Encode()
	return b
}
