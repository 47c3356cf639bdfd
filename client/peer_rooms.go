package client

import (
	"github.com/khadga/khadga/proto"
)

// A peer is shared by every room we and the remote are both in: these
// keep its member record and that set of rooms, under p.mu.

// Member returns what we know of the remote peer.
func (p *peer) Member() proto.Member {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.member
}

func (p *peer) setMember(m proto.Member) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m.User != "" {
		p.member = m
	}
}

// Rooms lists the rooms we share with the peer.
func (p *peer) Rooms() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	rs := make([]string, 0, len(p.rooms))
	for r := range p.rooms {
		rs = append(rs, r)
	}
	return rs
}

func (p *peer) inRoom(room string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rooms[room]
}

// addRoom records a shared room and reports whether the chat channel is
// already open, so the caller can tell the room the peer is connected.
func (p *peer) addRoom(room string) bool {
	p.mu.Lock()
	p.rooms[room] = true
	p.mu.Unlock()
	return p.chatOpen.Load()
}

// removeRoom forgets a shared room and reports how many are left.
func (p *peer) removeRoom(room string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.rooms, room)
	return len(p.rooms)
}

func (p *peer) anyRoom() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for r := range p.rooms {
		return r
	}
	return ""
}

// roomFor picks the room an incoming message belongs to: the one it names if
// we share it, else none.
func (p *peer) roomFor(named string) (string, bool) {
	if named != "" && p.inRoom(named) {
		return named, true
	}
	return "", false
}
