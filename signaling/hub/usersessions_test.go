package hub

import (
	"fmt"
	"testing"

	"github.com/khadga/khadga/proto"
)

// TestSessionsPerUserBounded: a session outlives its socket by the resume
// window, so a user who reconnects without its resume token, again and
// again, could hold any number of sessions, each a member of its rooms
// (fanned out to every member, listed in every joined). MaxConnsPerUser
// bounds sessions too: a new one past it ends the user's oldest session
// waiting for a resume, and that session's resume token stops working.
func TestSessionsPerUserBounded(t *testing.T) {
	ts := newTestServer(t, Config{MaxConnsPerUser: 2})
	var first proto.Welcome
	for i := range 10 {
		c := ts.dial("user=squatter")
		if i == 0 {
			first = c.welcome
		}
		c.join("lobby", "j")
		_ = c.ws.NetConn().Close() // drop the socket, no close frame
		eventually(t, "the socket to be gone", func() bool { k, _ := ts.hub.UserConns("squatter"); return k == 0 })
	}
	alice := ts.dial("user=alice")
	squat := 0
	for _, m := range alice.join("lobby", "j") {
		if m.User == "squatter" {
			squat++
		}
	}
	if squat > 2 {
		t.Fatalf("user squatter (MaxConnsPerUser 2) holds %d sessions in lobby", squat)
	}
	back := ts.dial("user=squatter&resume=" + first.ResumeToken)
	if back.welcome.Resumed {
		t.Fatal("the oldest waiting session, ended to make room, was resumed")
	}
}

// TestFlappingSessionCountsOnce: a session that dropped, resumed and
// dropped again waits once, not once per drop: with two sessions under a
// cap of two, a new one does not end it.
func TestFlappingSessionCountsOnce(t *testing.T) {
	ts := newTestServer(t, Config{MaxConnsPerUser: 2})
	a := ts.dial("user=bob")
	tok := a.welcome.ResumeToken
	gone := func() {
		_ = a.ws.NetConn().Close() // drop, no close frame
		eventually(t, "the socket to be gone", func() bool { k, _ := ts.hub.UserConns("bob"); return k == 0 })
	}
	for range 2 {
		gone()
		a = ts.dial("user=bob&resume=" + tok)
		if !a.welcome.Resumed {
			t.Fatal("resume failed")
		}
		tok = a.welcome.ResumeToken
	}
	gone()
	_ = ts.dial("user=bob") // a second session: two, under a cap of two
	if back := ts.dial("user=bob&resume=" + tok); !back.welcome.Resumed {
		t.Fatal("bob's only waiting session was ended by his second session, within the cap")
	}
}

// TestResumeAtTheConnectionLimit: a user at MaxConnsPerUser whose client
// saw its socket drop before the server did resumes over the old, still
// open connection, which the resume ends. It used to be refused as one
// connection too many until the server noticed the dead socket, up to a
// minute later. A new session at the limit is still refused.
func TestResumeAtTheConnectionLimit(t *testing.T) {
	ts := newTestServer(t, Config{MaxConnsPerUser: 1})
	old := ts.dial("user=bob")
	if k, limit := ts.hub.UserConns("bob"); k != limit || !ts.hub.TakesOver("bob", old.welcome.ResumeToken) || ts.hub.TakesOver("eve", old.welcome.ResumeToken) {
		t.Fatalf("bob at %d of %d connections; his token should take over his open connection, and only his", k, limit)
	}
	back := ts.dial("user=bob&resume=" + old.welcome.ResumeToken)
	if !back.welcome.Resumed || back.welcome.Peer != old.welcome.Peer {
		t.Fatalf("resume at the limit: %+v, want the same session", back.welcome)
	}
	if code := old.expectClose(); code == 0 {
		t.Fatal("the old connection did not end")
	}
	eventually(t, "one connection of bob's", func() bool { k, _ := ts.hub.UserConns("bob"); return k == 1 })
	extra := ts.dialRaw("user=bob", false)
	extra.expectError(proto.CodeRateLimited, "")
	if code := extra.expectClose(); code != proto.CloseTooManyConnections {
		t.Fatalf("a new session past the limit: close code %d, want %d", code, proto.CloseTooManyConnections)
	}
}

// waitingUsers is how many users the hub lists sessions of as waiting for
// a resume (userCounts.waiting), stale entries included.
func waitingUsers(h *Hub) int {
	h.users.mu.Lock()
	defer h.users.mu.Unlock()
	return len(h.users.waiting)
}

// TestReleasedSessionsLeaveTheWaitingList: in a cluster, a session whose
// socket dropped waits here for a resume, and its client often resumes on
// another node, which takes the session (Release); it ends there later
// (Remove). The hub listed it as waiting for good: the list of a user is
// cleaned only when that user's sessions change here again, so every user
// who never came back to this node kept an entry, and the session object
// with it, for as long as the node ran.
func TestReleasedSessionsLeaveTheWaitingList(t *testing.T) {
	ts := newTestServer(t, Config{Delivery: &goneSpy{}})
	const n = 20
	for i := range n {
		user := fmt.Sprint("roamer", i)
		c := ts.dial("user=" + user)
		drop(t, ts, c)
		eventually(t, "the session to wait for a resume", func() bool {
			s, ok := ts.hub.sessions.get(c.peer())
			return ok && s.awaiting.Load()
		})
		if _, _, err := ts.hub.Release([]byte(hashToken(c.welcome.ResumeToken)), user, "B"); err != nil {
			t.Fatalf("release: %v", err)
		}
		ts.hub.Remove(c.peer()) // it ends on node B
	}
	if k := waitingUsers(ts.hub); k != 0 {
		t.Fatalf("%d users listed with sessions waiting here, after all %d sessions went to another node and ended", k, n)
	}
	if st := ts.hub.Stats(); st.Sessions != 0 || st.Remote != 0 {
		t.Fatalf("stats %+v, want no session here", st)
	}
}
