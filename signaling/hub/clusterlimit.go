package hub

import (
	"cmp"
	"log/slog"
	"slices"
)

// Config.MaxConnsPerUser over a cluster. On one node, userCounts holds it:
// a user's open connections are at most the limit (Accept refuses the
// next), and so are its sessions, a session that waits for its client to
// resume included (a new one ends the user's oldest waiting session past
// the limit, newSession). In a cluster the same holds over every node:
// each node knows the other nodes' sessions from the directory, whether
// they wait and since when (SessionState.Away, published when a socket
// goes away), and Delivery.Elsewhere counts a user's. A connection is
// refused when the user's open connections on every node reach the
// limit; a new session past the limit ends the user's oldest waiting
// sessions wherever they are, asking their nodes (Delivery.EndWaiting),
// and is refused only when none of them could be ended (each resumed
// meanwhile, or its node did not answer).
//
// What a node knows of the others lags by the few milliseconds that their
// news takes, so two connections of one user at the same moment on two
// nodes may both pass: the user then holds one more (per node that took
// one at that moment) until one of its sessions ends. The round trips to
// other nodes happen on the goroutine that accepts the connection, with
// no lock held, as a claim's do; never on a connection's reader. A single
// node (LocalDelivery) does none of this.

// farSessions returns what this node knows of user's sessions on other
// nodes, for a connection with resumeToken (or none), when they could
// matter: the directory is walked only when the user's sessions here and
// elsewhere together (a count the directory keeps) come near the limit.
// A user far from it, with any number of sessions (a bot farm with a high
// limit, the benchmark's few accounts with thousands of connections each),
// costs two map lookups per connection, not a walk over its sessions.
func (h *Hub) farSessions(user, resumeToken string) Elsewhere {
	if !h.clustered || h.users.total(user)+h.delivery.SessionsElsewhere(user) < h.cfg.MaxConnsPerUser {
		return Elsewhere{}
	}
	var hash []byte
	if resumeToken != "" {
		hash = []byte(hashToken(resumeToken))
	}
	return h.delivery.Elsewhere(user, hash)
}

// makeRoom ends user's oldest sessions that wait for a resume, here or on
// other nodes (far), beyond what Config.MaxConnsPerUser leaves for a new
// connection of user, counted already, that will start a new session (it
// does nothing for a resume). It reports false if it could not end
// enough of them.
func (h *Hub) makeRoom(user, resumeToken string, far Elsewhere) bool {
	if far.Resumes || h.resumesHere(user, resumeToken) {
		return true
	}
	open, here := h.users.snapshot(user)
	excess := open + len(here) + far.Open + len(far.Waiting) - h.cfg.MaxConnsPerUser
	if excess <= 0 {
		return true
	}
	type waiting struct {
		s     *session // one of this node's, or nil
		w     Waiting
		since int64
	}
	all := make([]waiting, 0, len(here)+len(far.Waiting))
	for _, s := range here {
		s.mu.Lock()
		all = append(all, waiting{s: s, since: s.away})
		s.mu.Unlock()
	}
	for _, w := range far.Waiting {
		all = append(all, waiting{w: w, since: w.Since.UnixNano()})
	}
	slices.SortStableFunc(all, func(a, b waiting) int { return cmp.Compare(a.since, b.since) })
	for _, o := range all {
		if excess <= 0 {
			break
		}
		if o.s != nil {
			h.expire(o.s) // nothing if its client resumed meanwhile
			if o.s.isEnded() {
				h.log.Debug("hub: ended a session waiting for a resume: its user opened too many", slog.String("peer", o.s.member.Peer))
				excess--
			}
			continue
		}
		if h.delivery.EndWaiting(o.w.Node, o.w.Peer, user) {
			h.log.Debug("hub: another node ended a session waiting for a resume: its user opened too many",
				slog.String("peer", o.w.Peer), slog.String("node", o.w.Node))
			excess--
		}
	}
	return excess <= 0
}

// resumesHere reports whether resumeToken names a session of user on this
// node, which the connection will resume rather than start a new one.
func (h *Hub) resumesHere(user, resumeToken string) bool {
	if resumeToken == "" {
		return false
	}
	s, ok := h.tokens.get(hashToken(resumeToken))
	return ok && s.member.User == user && !s.isEnded()
}

// EndWaiting ends peer, a session of user on this node that waits for its
// client to resume, for a new session of user on another node past
// Config.MaxConnsPerUser (Delivery.EndWaiting): as when its resume window
// passes, its rooms see it leave and its resume token stops working. It
// reports whether peer is gone from this node: false if it has its
// connection again, or another node holds it now.
func (h *Hub) EndWaiting(peer, user string) bool {
	s, ok := h.sessions.get(peer)
	if !ok {
		return true // ended already
	}
	if s.member.User != user {
		return false
	}
	h.expire(s)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended && s.node == "" {
		h.log.Debug("hub: ended a session waiting for a resume: its user opened too many on another node", slog.String("peer", peer))
	}
	return s.ended
}
