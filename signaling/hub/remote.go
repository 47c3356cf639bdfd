package hub

import (
	"errors"
	"log/slog"
	"slices"
	"time"
)

// Sessions of other nodes. In a cluster, each node keeps a proxy for every
// session another node holds: a session with node set and nothing else of
// its own. Proxies make the rest of the hub node-blind: they are members of
// rooms (so a signal's room check and a join's member list see everyone),
// they are in presence, and delivering to one hands the message to
// Delivery for its node. The cluster feeds them from what the other nodes
// publish (Apply, Remove) and hands this node's sessions to another node
// for a resume there (Release).

// Apply makes the hub's view of a session of another node match st: it
// makes a proxy for a session it did not know (which then shows in
// presence), points a known one at st.Node, and joins or leaves rooms to
// match st.Rooms, telling this node's members of those rooms. A state for
// a session this node holds is ignored: this node is the authority on its
// own sessions, and what comes back is the echo of its own Publish, or
// older. Apply calls must come in the order the states were published.
func (h *Hub) Apply(st SessionState) {
	if st.Node == "" {
		return
	}
	s, created := h.sessions.getOrCreate(st.Member.Peer, func() *session {
		p := &session{h: h, member: st.Member, grants: st.Grants, login: st.Login, keyID: st.KeyID}
		p.setNodeLocked(st.Node)
		return p
	})
	if !created {
		s.mu.Lock()
		local, ended := s.node == "", s.ended
		if !local && !ended {
			s.setNodeLocked(st.Node)
		}
		s.mu.Unlock()
		if local || ended {
			return
		}
	} else {
		h.stats.remote.Add(1)
		h.presence.change(st.Member, true)
	}
	s.roomsMu.Lock()
	defer s.roomsMu.Unlock()
	for name, r := range s.rooms {
		if !slices.Contains(st.Rooms, name) {
			delete(s.rooms, name)
			h.removeMember(r, s)
		}
	}
	for _, name := range st.Rooms {
		if _, ok := s.rooms[name]; !ok {
			h.addRemoteMemberLocked(s, name)
		}
	}
}

// addRemoteMemberLocked makes proxy s a member of room name: the join
// happened on its node, which checked the limits. s.roomsMu is held.
func (h *Hub) addRemoteMemberLocked(s *session, name string) {
	for {
		r, created := h.rooms.getOrCreate(name, func() *room { return newRoom(name) })
		if created {
			h.stats.rooms.Add(1)
		}
		r.mu.Lock()
		if r.dead {
			r.mu.Unlock()
			continue
		}
		h.addMemberLocked(r, s)
		r.mu.Unlock()
		if s.rooms == nil {
			s.rooms = make(map[string]*room)
		}
		s.rooms[name] = r
		return
	}
}

// Remove ends the proxy of a session of another node that ended: it leaves
// its rooms (this node's members see peer-left) and presence shows it
// offline. It does nothing for a session this node holds.
func (h *Hub) Remove(peer string) {
	s, ok := h.sessions.get(peer)
	if !ok {
		return
	}
	s.mu.Lock()
	if s.node == "" || s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.mu.Unlock()
	h.sessions.deleteIf(peer, func(v *session) bool { return v == s })
	h.stats.remote.Add(-1)
	h.leaveAll(s)
	h.presence.change(s.member, false)
}

// RemoveNode removes every proxy of node's sessions (Remove): the cluster
// calls it when node is gone and its sessions did not resume elsewhere in
// time. It returns how many it removed.
func (h *Hub) RemoveNode(node string) int {
	n := 0
	for _, s := range h.sessions.collect(nil) {
		s.mu.Lock()
		of := s.node == node && !s.ended
		s.mu.Unlock()
		if of {
			h.Remove(s.member.Peer)
			n++
		}
	}
	return n
}

// LocalStates returns the state of every session this node holds, for a
// cluster that must tell the others again (after it reconnects, say).
func (h *Hub) LocalStates() []SessionState {
	var out []SessionState
	for _, s := range h.sessions.collect(nil) {
		if !s.local() {
			continue
		}
		s.roomsMu.RLock()
		st := s.stateLocked()
		s.roomsMu.RUnlock()
		if !s.isEnded() {
			out = append(out, st)
		}
	}
	return out
}

// ErrNotHere is Release's answer for a token that names no session this
// node holds (any more): the session ended, or moved on.
var ErrNotHere = errors.New("hub: no such session on this node")

// Release lets a session of this node go to node, where its client
// resumes: the session that tokenHash names, if it is user's. Its
// connection, if still open, is dropped; what waited for it is returned
// (for node to deliver), with its state; it stays here as a proxy of node.
func (h *Hub) Release(tokenHash []byte, user, node string) (SessionState, []Envelope, error) {
	s, ok := h.tokens.get(string(tokenHash))
	if !ok || s.member.User != user {
		return SessionState{}, nil, ErrNotHere
	}
	s.roomsMu.RLock()
	defer s.roomsMu.RUnlock()
	s.mu.Lock()
	if s.ended || s.node != "" || s.tokenHash != string(tokenHash) {
		s.mu.Unlock()
		return SessionState{}, nil, ErrNotHere
	}
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.awaiting.Store(false)
	var pending []queued
	if c := s.conn; c != nil {
		pending = keepable(c.ws.Takeover(errResumedElsewhere))
		s.conn = nil
	}
	pending = append(pending, s.absent...)
	s.absent = nil
	h.tokens.deleteIf(s.tokenHash, func(v *session) bool { return v == s })
	s.tokenHash = ""
	st := s.stateBothLocked()
	st.TokenHash = tokenHash
	// Another node's from the moment its token is gone, in one critical
	// section: a revocation or a move that takes s.mu after this finds it
	// a proxy and leaves it to its new node (TestRevokeRacingRelease).
	s.setNodeLocked(node)
	s.mu.Unlock()
	h.users.unwait(s) // no longer waits here, whether or not it did
	h.stats.sessions.Add(-1)
	h.stats.remote.Add(1)
	out := make([]Envelope, len(pending))
	for i, it := range pending {
		out[i] = it.Envelope
	}
	h.log.Debug("hub: session released to another node", slog.String("peer", s.member.Peer), slog.String("node", node))
	return st, out, nil
}

// Handover makes a session of this node a proxy of node, which has taken it
// (its client resumed there) without Release reaching this node: the
// cluster learns it from the directory. It returns what waited for the
// session, for node.
func (h *Hub) Handover(peer, node string) []Envelope {
	s, ok := h.sessions.get(peer)
	if !ok || !s.local() {
		return nil
	}
	s.mu.Lock()
	tok := s.tokenHash
	s.mu.Unlock()
	_, pending, err := h.Release([]byte(tok), s.member.User, node)
	if err != nil {
		return nil
	}
	return pending
}

// IsLocal reports whether this node holds the session peer.
func (h *Hub) IsLocal(peer string) bool {
	s, ok := h.sessions.get(peer)
	return ok && s.local()
}

// ResumeWindow is how long a session whose socket dropped waits for its
// client (Config.ResumeWindow).
func (h *Hub) ResumeWindow() time.Duration { return h.cfg.ResumeWindow }

// EndSessions ends every session of this node now, as if its resume window
// had passed: after Shutdown, on a node that is leaving a cluster, for the
// sessions whose clients did not resume on another node.
func (h *Hub) EndSessions() {
	for _, s := range h.sessions.collect(nil) {
		if !s.local() {
			continue
		}
		s.mu.Lock()
		if s.ended || s.node != "" { // claimed since: its new node's now
			s.mu.Unlock()
			continue
		}
		s.ended = true
		if s.timer != nil {
			s.timer.Stop()
			s.timer = nil
		}
		kept := s.absent
		s.absent = nil
		s.mu.Unlock()
		h.endSession(s, kept)
	}
}

// RoomMembers is how many sessions, of any node, this node sees in room.
func (h *Hub) RoomMembers(room string) int {
	r, ok := h.rooms.get(room)
	if !ok {
		return 0
	}
	return len(*r.members.Load())
}
