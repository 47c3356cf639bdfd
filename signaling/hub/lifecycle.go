package hub

import (
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/wsconn"
)

// attach binds a new connection to a session: the one its resume token
// names, if that is valid and of the same user, or a new one. It queues
// welcome first, then whatever was kept for the session, then presence.
func (h *Hub) attach(c *conn, id Identity, opts ConnOptions) {
	ice, expires := h.iceServers(id.User)
	resumed := false
	if opts.ResumeToken != "" {
		resumed = h.resume(c, id, opts.ResumeToken, ice, expires)
		if !resumed {
			h.stats.resumesFailed.Add(1)
		}
	}
	if !resumed {
		h.newSession(c, id, ice, expires)
	}
	if h.revokedMeanwhile(c, id.Checked) {
		return
	}
	if c.presence {
		h.presence.subscribe(c)
	}
	h.log.Debug("hub: connection attached", slog.String("peer", c.s.member.Peer),
		slog.String("user", id.User), slog.Bool("resumed", resumed))
}

func (h *Hub) iceServers(user string) ([]proto.ICEServer, int64) {
	if h.cfg.ICEServers == nil {
		return []proto.ICEServer{}, 0
	}
	ice, exp := h.cfg.ICEServers(user)
	if ice == nil {
		ice = []proto.ICEServer{}
	}
	var unix int64
	if !exp.IsZero() {
		unix = exp.Unix()
	}
	return ice, unix
}

func (h *Hub) welcome(s *session, token string, resumed bool, rooms []string, ice []proto.ICEServer, expires int64) []byte {
	w := proto.Welcome{
		Peer: s.member.Peer, User: s.member.User, Role: s.member.Role,
		ResumeToken: token,
		// Package signaling reads the next resume token from
		// Sec-WebSocket-Protocol (wsCredential).
		ProtocolCredentials: true,
		ResumeWindow:        int((h.cfg.ResumeWindow + time.Second - 1) / time.Second),
		Resumed:             resumed,
		Rooms:               rooms,
		ICEServers:          ice,
		ICEServersExpire:    expires,
	}
	b, _ := proto.New(proto.TypeWelcome, w).Encode()
	return b
}

// newSession makes a session for c and announces it online. The new peer
// id is known to nobody until the presence announcement, so welcome, queued
// just before it, is the first message on c.
func (h *Hub) newSession(c *conn, id Identity, ice []proto.ICEServer, expires int64) {
	// A session outlives its socket by the resume window: without this,
	// a user reconnecting without its resume token could hold any number
	// of sessions, each a member of its rooms.
	for _, old := range h.users.evictable(id.User, h.cfg.MaxConnsPerUser) {
		h.log.Debug("hub: ended a session waiting for a resume: its user opened too many", slog.String("peer", old.member.Peer))
		h.expire(old)
	}
	s := &session{h: h, grants: id.Rooms, login: id.Login, keyID: id.KeyID, conn: c}
	c.s = s
	for {
		s.member = proto.Member{Peer: randomID(12), User: id.User, Role: id.Role}
		if h.sessions.putIfAbsent(s.member.Peer, s) {
			break // else 96 random bits collided; try another id
		}
	}
	h.stats.sessions.Add(1)
	tok := h.newResumeToken(s)
	c.send(h.welcome(s, tok, false, nil, ice, expires))
	h.presence.change(s.member, true)
	s.publish()
}

// resume takes over the session named by tok, if it is this user's and
// still alive. The token is single-use: a fresh one goes in the welcome. A
// token of another user is ignored, not consumed, so it cannot be used to
// knock a session out. The connection's token is checked afresh by the
// HTTP handler; if its role or room grants differ from the session's (the
// account changed), the session ends and the client gets a new one, so
// that nobody keeps what was taken away.
func (h *Hub) resume(c *conn, id Identity, tok string, ice []proto.ICEServer, expires int64) bool {
	hash := hashToken(tok)
	s, ok := h.tokens.get(hash)
	if !ok {
		return h.claim(c, id, hash, ice, expires)
	}
	if s.member.User != id.User {
		return false
	}
	if s.member.Role != id.Role || !slices.Equal(s.grants, id.Rooms) {
		h.revoke(s, proto.CodeRevoked, "the account changed")
		return false
	}
	rooms := s.roomList()
	s.mu.Lock()
	if s.ended || s.tokenHash != hash {
		s.mu.Unlock()
		return false
	}
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	newTok := randomID(32)
	newHash := hashToken(newTok)
	h.tokens.putIfAbsent(newHash, s)
	h.tokens.deleteIf(hash, func(v *session) bool { return v == s })
	s.tokenHash = newHash

	c.s = s
	h.stats.resumesOK.Add(1) // before welcome, so that a client that sees it sees the count
	var pending []queued
	if old := s.conn; old != nil {
		// The old socket is still open (the client saw the drop first):
		// take over what it has not written yet, and drop it.
		pending = keepable(old.ws.Takeover(errResumedElsewhere))
	}
	expired := s.expireLocked(time.Now())
	pending = append(pending, s.absent...)
	s.absent = nil
	c.send(h.welcome(s, newTok, true, rooms, ice, expires))
	onConnection(pending)
	_ = c.ws.SendAll(pending) // bounded by the old queue and AbsentQueue
	s.conn = c
	s.away = 0
	s.login, s.keyID = id.Login, id.KeyID
	s.awaiting.Store(false)
	s.mu.Unlock()
	h.delivered(pending)
	h.reportDropped(s.member.Peer, expired)
	s.publish()
	return true
}

// claim resumes on this node a session that another node holds: Delivery
// finds it by its token and takes it from its node, with what waited for
// it. The session keeps its peer id and rooms, and the other members see
// no leave or join.
func (h *Hub) claim(c *conn, id Identity, hash string, ice []proto.ICEServer, expires int64) bool {
	st, pending, err := h.delivery.Claim([]byte(hash), id.User)
	if err != nil {
		return false
	}
	s := h.takeProxy(st)
	if st.Member.Role != id.Role || !slices.Equal(st.Grants, id.Rooms) {
		// The account changed: the claimed session ends, the client gets
		// a new one (as for a resume on the same node).
		s.mu.Lock()
		s.setNodeLocked("")
		s.mu.Unlock()
		h.stats.sessions.Add(1)
		h.revoke(s, proto.CodeRevoked, "the account changed")
		return false
	}
	s.roomsMu.Lock()
	defer s.roomsMu.Unlock()
	newTok := randomID(32)
	newHash := hashToken(newTok)
	h.tokens.putIfAbsent(newHash, s)
	c.s = s
	h.stats.resumesOK.Add(1)
	s.mu.Lock()
	s.setNodeLocked("")
	s.ordered.Store(h.claimSeq.Add(1)) // with the switch, under s.mu: relay looks again under it (deliverChecked)
	s.tokenHash = newHash
	c.send(h.welcome(s, newTok, true, st.Rooms, ice, expires))
	items := make([]queued, len(pending))
	for i, e := range pending {
		items[i] = keep(e)
	}
	onConnection(items)
	_ = c.ws.SendAll(items)
	s.conn = c
	s.away = 0 // a proxy of this node's once, taken back
	s.login, s.keyID = id.Login, id.KeyID
	s.mu.Unlock()
	h.delivered(items)
	// Rooms the proxy had not joined yet (this node had not heard of them):
	// this node's members hear of them now.
	for _, name := range st.Rooms {
		if _, ok := s.rooms[name]; !ok {
			h.addRemoteMemberLocked(s, name)
		}
	}
	h.stats.sessions.Add(1)
	h.delivery.Publish(s.stateLocked())
	h.log.Debug("hub: session claimed from another node", slog.String("peer", s.member.Peer), slog.String("node", st.Node))
	return true
}

// takeProxy returns the session object for st, a session this node is
// claiming: its proxy, or a new one if this node had none (or only one
// that had ended).
func (h *Hub) takeProxy(st SessionState) *session {
	for {
		s, created := h.sessions.getOrCreate(st.Member.Peer, func() *session {
			return &session{h: h, member: st.Member, grants: st.Grants, login: st.Login, keyID: st.KeyID}
		})
		if created {
			h.presence.change(st.Member, true)
			return s
		}
		if !s.isEnded() {
			if !s.local() {
				h.stats.remote.Add(-1)
			}
			return s
		}
		h.sessions.deleteIf(st.Member.Peer, func(v *session) bool { return v == s })
	}
}

// onConnection marks items, about to be queued on a connection, as no
// longer held: h.delivered tells their nodes now, which forget them, so a
// later drop is for the hub to report.
func onConnection(items []queued) {
	for i := range items {
		items[i].Held = false
	}
}

// errResumedElsewhere ends a connection whose session a new connection
// resumed.
var errResumedElsewhere = errors.New("hub: session resumed on another connection")

// detach unbinds a finished connection from its session. A client that
// closed with 1000 has left: its session ends now. Otherwise the session
// waits the resume window, keeping what was queued for it.
func (h *Hub) detach(c *conn, res wsconn.Result[queued]) {
	if c.presence {
		h.presence.unsubscribe(c)
	}
	leaving := res.ClientCode == 1000 && res.ServerCode == 0
	left := keepable(res.Unsent)
	s := c.s
	s.mu.Lock()
	if s.conn != c || s.ended {
		s.mu.Unlock()
		// Revoked while its signals waited, or resumed on a connection
		// that took over after this one's queue was taken (so Takeover
		// found nothing): either way they reach nobody now, and their
		// senders are told. Handing them to the new connection would put
		// them behind newer ones.
		h.reportDropped(s.member.Peer, left)
		return
	}
	s.conn = nil
	var dropped []queued
	if n := h.cfg.AbsentQueue - len(s.absent); len(left) > n {
		dropped = left[max(n, 0):]
		left = left[:max(n, 0)]
	}
	for i := range left {
		left[i].at = time.Now().UnixNano()
	}
	// Clip: dropped shares left's array past its end, and is read after
	// the lock is released; the absent queue must not grow into it.
	s.absent = append(slices.Clip(left), s.absent...)
	if leaving {
		s.ended = true
		kept := s.absent
		s.absent = nil
		s.mu.Unlock()
		h.reportDropped(s.member.Peer, dropped)
		h.endSession(s, kept)
		return
	}
	if !h.stopped.Load() {
		s.timer = time.AfterFunc(h.cfg.ResumeWindow, func() { h.expire(s) })
	}
	if h.clustered {
		s.away = time.Now().UnixNano()
	}
	s.awaiting.Store(true)
	s.mu.Unlock()
	h.users.wait(s)
	h.reportDropped(s.member.Peer, dropped)
	if h.clustered && !h.stopped.Load() {
		// The other nodes count it as waiting from now on, and may ask
		// this node to end it for a new session of its user
		// (clusterlimit.go). Not while this node drains: its sessions
		// are moving to the other nodes, whose claims say where.
		s.publishWaiting()
	}
}

// keepable returns the messages worth keeping for a resume: not presence,
// which a resumed connection gets afresh.
func keepable(items []queued) []queued {
	out := items[:0]
	for _, it := range items {
		if it.Kind != KindPresence {
			out = append(out, it)
		}
	}
	return out
}

// expire ends a session whose resume window passed without a resume.
func (h *Hub) expire(s *session) {
	if !h.enter() {
		return
	}
	defer h.wg.Done()
	s.mu.Lock()
	if s.ended || s.conn != nil || !s.local() {
		s.mu.Unlock()
		return
	}
	s.ended = true
	if s.timer != nil {
		s.timer.Stop() // ended early: its user opened too many (newSession)
		s.timer = nil
	}
	kept := s.absent
	s.absent = nil
	s.mu.Unlock()
	h.log.Debug("hub: session expired", slog.String("peer", s.member.Peer))
	h.endSession(s, kept)
}

// endSession removes an ended session: from the directory, its rooms (the
// others get peer-left) and presence. Signals still queued for it are
// reported to their senders.
func (h *Hub) endSession(s *session, kept []queued) {
	h.sessions.deleteIf(s.member.Peer, func(v *session) bool { return v == s })
	s.mu.Lock()
	hash := s.tokenHash
	s.awaiting.Store(false)
	s.mu.Unlock()
	h.users.unwait(s)
	h.tokens.deleteIf(hash, func(v *session) bool { return v == s })
	h.leaveAll(s)
	h.presence.change(s.member, false)
	h.delivery.Gone(s.member.Peer)
	h.stats.sessions.Add(-1)
	h.reportDropped(s.member.Peer, kept)
}

// reportDropped tells the senders of dropped signals that theirs were not
// delivered. No lock may be held.
func (h *Hub) reportDropped(target string, items []queued) {
	var tracked []Envelope
	for _, it := range items {
		if it.Kind != KindSignal {
			continue
		}
		h.stats.expired.Add(1)
		if it.Seq != 0 && it.Held {
			// Its node tracks it, and tells its sender once (Undelivered).
			e := it.Envelope
			e.Msg = nil
			tracked = append(tracked, e)
			continue
		}
		if it.From == "" {
			continue
		}
		h.stats.countError(proto.CodePeerUnavailable)
		msg := errorMsg(it.Ref, proto.CodePeerUnavailable, "signal to peer "+target+" was not delivered: the peer left or did not come back in time")
		_ = h.send(it.From, Envelope{Msg: msg, Kind: KindReport})
	}
	if len(tracked) > 0 {
		h.delivery.Undelivered(tracked)
	}
}

// Revoke ends, for good, every session whose identity matches: its
// connection gets an error with code and reason, then close code
// proto.CloseRevoked, and the session ends at once instead of waiting for
// a resume (its rooms see it leave, its resume token dies, signals that
// waited for it are reported to their senders). It is for signing out,
// disabling, deleting or re-roling a user, and retiring a signing key; it
// returns how many sessions it ended.
func (h *Hub) Revoke(match func(Identity) bool, code proto.Code, reason string) int {
	h.revoked.add(revocation{match: match, code: code, reason: reason})
	n := 0
	for _, s := range h.sessions.collect(nil) {
		if !s.local() {
			continue // its own node revokes it
		}
		if match(s.identity()) {
			h.runRevokeHook()
			if h.revoke(s, code, reason) {
				n++
			}
		}
	}
	return n
}

func (h *Hub) runRevokeHook() {
	if hook := h.testHookRevokeMatched.Load(); hook != nil {
		(*hook)()
	}
}

// CloseUser ends every session of user (Revoke).
func (h *Hub) CloseUser(user string, code proto.Code, reason string) int {
	return h.Revoke(func(id Identity) bool { return id.User == user }, code, reason)
}

// CloseLogin ends the sessions of user opened with tokens of one sign-in
// (Identity.Login), leaving the user's other sign-ins connected (Revoke).
func (h *Hub) CloseLogin(user, login string, code proto.Code, reason string) int {
	return h.Revoke(func(id Identity) bool { return id.User == user && id.Login == login }, code, reason)
}

// MoveLogin gives the sessions of user opened with tokens of sign-in from
// the sign-in to (a password change gives the sign-in that made it new
// tokens, of a new refresh-token family): signing out to then ends them.
// Like a revocation, it also reaches sessions whose connections were
// checked before it and attach after it (revocations.go). It returns how
// many it moved.
func (h *Hub) MoveLogin(user, from, to string) int {
	h.revoked.add(revocation{match: func(id Identity) bool { return id.User == user && id.Login == from }, moveTo: to})
	n := 0
	for _, s := range h.sessions.collect(nil) {
		if !s.local() || s.member.User != user {
			continue
		}
		h.runRevokeHook()
		if h.moveSession(s, from, to) {
			n++
		}
	}
	return n
}

// moveSession gives s the sign-in to if it has from, has not ended and is
// still this node's (a claim may have taken it since the caller looked:
// its new node moves it). A revocation of to that came first (revokedOnMove)
// ends it then.
func (h *Hub) moveSession(s *session, from, to string) bool {
	s.mu.Lock()
	moved := !s.ended && s.node == "" && s.login == from
	if moved {
		s.login = to
	}
	s.mu.Unlock()
	if !moved {
		return false
	}
	id := s.identity()
	old := id
	old.Login = from
	if r, ok := h.revoked.onMove(old, id); ok && h.revoke(s, r.code, r.reason) {
		return true
	}
	s.publish()
	return true
}

// revoke ends s and closes its connection, if it has one. It reports
// whether s was still alive here. A session that another node claimed
// since the caller found it local is that node's to end: its proxy stays
// (ended here, its end, Delivery.Gone, would outrank the new node's state
// and hide the live session from the cluster), and the new node hears of
// the revocation itself, or remembers it for the claim's connection.
func (h *Hub) revoke(s *session, code proto.Code, reason string) bool {
	s.mu.Lock()
	if s.ended || s.node != "" {
		s.mu.Unlock()
		return false
	}
	s.ended = true
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	c := s.conn
	kept := s.absent
	s.absent = nil
	s.mu.Unlock()
	h.stats.revoked.Add(1)
	h.log.Info("hub: session revoked", slog.String("peer", s.member.Peer), slog.String("user", s.member.User), slog.String("reason", reason))
	if c != nil {
		h.stats.countError(code)
		c.closeWith(proto.NewError("", code, "%s", reason), proto.CloseRevoked, reason)
	}
	h.endSession(s, kept)
	return true
}
