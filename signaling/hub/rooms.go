package hub

import (
	"fmt"
	"sync"

	"github.com/khadga/khadga/proto"
)

// room is a set of sessions that may signal each other. A room exists while
// it has members; the last one out marks it dead and removes it, and a join
// that finds a dead room looks it up again.
type room struct {
	name    string
	mu      sync.RWMutex
	members map[string]*session // by peer id
	dead    bool
}

// has reports whether peer is a member.
func (r *room) has(peer string) bool {
	r.mu.RLock()
	_, ok := r.members[peer]
	r.mu.RUnlock()
	return ok
}

// join adds c's session to a room and answers joined; the other members get
// peer-joined.
func (h *Hub) join(c *conn, m *proto.Message) {
	s := c.s
	if !s.granted(m.Room) {
		c.replyError(m.ID, proto.CodeUnauthorized, "your token does not grant room %s", m.Room)
		return
	}
	s.roomsMu.Lock()
	code, reply := h.joinLocked(c, m)
	s.roomsMu.Unlock()
	switch {
	case code != "":
		c.replyError(m.ID, code, "%s", reply)
	case reply != "":
		c.send([]byte(reply))
	}
}

// joinLocked does the work of join with s.roomsMu held. It returns an error
// code and text, or an answer to send once the lock is released (empty if
// it was queued already).
func (h *Hub) joinLocked(c *conn, m *proto.Message) (proto.Code, string) {
	s := c.s
	if r, ok := s.rooms[m.Room]; ok {
		// Joining again answers with the members present, which lets a
		// resumed client refresh its view.
		r.mu.RLock()
		peers := membersExcept(r, s)
		r.mu.RUnlock()
		return "", string(joinedMsg(m.ID, m.Room, peers))
	}
	if len(s.rooms) >= h.cfg.MaxRoomsPerSession {
		return proto.CodeTooManyRooms, fmt.Sprintf("a session may be in at most %d rooms", h.cfg.MaxRoomsPerSession)
	}
	for {
		r, created := h.rooms.getOrCreate(m.Room, func() *room {
			return &room{name: m.Room, members: make(map[string]*session)}
		})
		if created {
			h.stats.rooms.Add(1)
		}
		r.mu.Lock()
		if r.dead {
			r.mu.Unlock()
			continue
		}
		if len(r.members) >= h.cfg.MaxRoomMembers {
			r.mu.Unlock()
			return proto.CodeRoomFull, fmt.Sprintf("room %s is full (%d members)", m.Room, h.cfg.MaxRoomMembers)
		}
		// Answer and announce under the room lock, so that every member
		// sees joins and leaves in one order, and the joiner gets joined
		// before any signal sent in answer to peer-joined. Nothing here
		// waits: a joiner whose queue is full is a slow consumer.
		c.send(joinedMsg(m.ID, m.Room, membersExcept(r, s)))
		ev := memberMsg(proto.TypePeerJoined, m.Room, s.member)
		for peer := range r.members {
			_ = h.delivery.Deliver(peer, Envelope{Msg: ev, Kind: KindEvent})
		}
		r.members[s.member.Peer] = s
		r.mu.Unlock()
		h.stats.members.Add(1)
		if s.rooms == nil {
			s.rooms = make(map[string]*room)
		}
		s.rooms[m.Room] = r
		return "", ""
	}
}

// leave takes c's session out of a room and acks.
func (h *Hub) leave(c *conn, m *proto.Message) {
	s := c.s
	s.roomsMu.Lock()
	r, ok := s.rooms[m.Room]
	if ok {
		delete(s.rooms, m.Room)
		h.removeMember(r, s)
	}
	s.roomsMu.Unlock()
	if !ok {
		c.replyError(m.ID, proto.CodeNotInRoom, "you are not in room %s", m.Room)
		return
	}
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

// removeMember deletes s from r, tells the others, and removes r when it is
// empty. Lock order: s.roomsMu (held by the caller), r.mu, then the shard
// lock of h.rooms.
func (h *Hub) removeMember(r *room, s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.members[s.member.Peer]; !ok {
		return
	}
	delete(r.members, s.member.Peer)
	h.stats.members.Add(-1)
	ev, _ := (&proto.Message{Type: proto.TypePeerLeft, Room: r.name,
		Data: mustJSON(proto.PeerLeft{Peer: s.member.Peer})}).Encode()
	for peer := range r.members {
		_ = h.delivery.Deliver(peer, Envelope{Msg: ev, Kind: KindEvent})
	}
	if len(r.members) == 0 {
		r.dead = true
		if h.rooms.deleteIf(r.name, func(v *room) bool { return v == r }) {
			h.stats.rooms.Add(-1)
		}
	}
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

// membersExcept lists r's members other than s. r.mu is held.
func membersExcept(r *room, s *session) []proto.Member {
	peers := make([]proto.Member, 0, len(r.members))
	for _, o := range r.members {
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
