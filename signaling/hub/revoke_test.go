package hub

import (
	"encoding/json"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/khadga/khadga/proto"
)

// Revoke ends a user's sessions for good: the client is told why and
// closed with CloseRevoked, the others see it leave at once (not after the
// resume window), its resume token is dead, and a signal that waited for
// it is reported to its sender.
func TestRevoke(t *testing.T) { forModes(t, testRevoke) }

func testRevoke(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{ResumeWindow: time.Hour}, mode)
	alice := ts.dial("user=alice")
	bob := ts.dial("user=bob")
	bob2 := ts.dial("user=bob")
	alice.join("r", "1")
	bob.join("r", "1")
	alice.expect(proto.TypePeerJoined)
	drop(t, ts, bob2) // one of bob's sessions is away, waiting to resume
	n := ts.hub.CloseUser("bob", proto.CodeRevoked, "user disabled")
	if n != 2 {
		t.Fatalf("Revoke ended %d sessions, want bob's 2", n)
	}
	if e := bob.expectError(proto.CodeRevoked, ""); e.Message != "user disabled" {
		t.Fatalf("error message %q, want the reason", e.Message)
	}
	if code := bob.expectClose(); code != proto.CloseRevoked {
		t.Fatalf("close code %d, want %d", code, proto.CloseRevoked)
	}
	if m := alice.expect(proto.TypePeerLeft); m.Room != "r" {
		t.Fatalf("peer-left %+v", m)
	}
	back := ts.dial("user=bob&resume=" + url.QueryEscape(bob2.welcome.ResumeToken))
	if back.welcome.Resumed {
		t.Fatal("a revoked session resumed")
	}
	if st := ts.hub.Stats(); st.Revoked != 2 || st.Sessions != 2 {
		t.Fatalf("stats %+v, want 2 revoked and alice's and the new bob's sessions", st)
	}
}

// A resume with a token whose role or grants differ from the session's (the
// account changed) gets a new session; the old one ends.
func TestResumeWithChangedAccountStartsAfresh(t *testing.T) {
	forModes(t, testResumeChangedAccount)
}

func testResumeChangedAccount(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{ResumeWindow: time.Hour}, mode)
	alice := ts.dial("user=alice")
	bob := ts.dial("user=bob&role=admin")
	alice.join("r", "1")
	bob.join("r", "1")
	alice.expect(proto.TypePeerJoined)
	drop(t, ts, bob)
	back := ts.dial("user=bob&role=user&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	if back.welcome.Resumed || back.peer() == bob.peer() || back.welcome.Role != proto.RoleUser {
		t.Fatalf("welcome %+v: a downgraded account kept its session", back.welcome)
	}
	if m := alice.expect(proto.TypePeerLeft); m.Room != "r" {
		t.Fatalf("peer-left %+v", m)
	}
}

// Accept enforces the per-user connection limit with a reason.
func TestTooManyConnections(t *testing.T) { forModes(t, testTooManyConnections) }

func testTooManyConnections(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{MaxConnsPerUser: 2}, mode)
	ts.dial("user=carol")
	ts.dial("user=carol")
	third := ts.dialRaw("user=carol", false)
	third.expectError(proto.CodeRateLimited, "")
	if code := third.expectClose(); code != proto.CloseTooManyConnections {
		t.Fatalf("close code %d, want %d", code, proto.CloseTooManyConnections)
	}
	ts.dial("user=dave") // others are not affected
}

// A connection whose credentials were checked before a revocation, and
// whose session attaches after the hub ran it (or is claimed from another
// node while it passed), is ended as it attaches: told why and closed with
// CloseRevoked. A connection checked after the revocation, or of another
// sign-in than the one signed out, is not.
func TestRevocationReachesLateAttach(t *testing.T) { forModes(t, testRevocationLateAttach) }

func testRevocationLateAttach(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{ResumeWindow: time.Hour}, mode)
	checked := func() string { return "&checked=" + strconv.FormatInt(time.Now().UnixNano(), 10) }
	ts.dial("user=alice")
	beforeBan, beforeSignOut := checked(), checked()
	if n := ts.hub.CloseUser("bob", proto.CodeRevoked, "user disabled"); n != 0 {
		t.Fatalf("CloseUser ended %d sessions; bob had none yet", n)
	}
	if n := ts.hub.CloseLogin("carol", "L1", proto.CodeRevoked, "signed out"); n != 0 {
		t.Fatalf("CloseLogin ended %d sessions; carol had none yet", n)
	}

	late := ts.dial("user=bob" + beforeBan)
	if e := late.expectError(proto.CodeRevoked, ""); e.Message != "user disabled" {
		t.Fatalf("error message %q, want the revocation's reason", e.Message)
	}
	if code := late.expectClose(); code != proto.CloseRevoked {
		t.Fatalf("close code %d, want %d", code, proto.CloseRevoked)
	}
	lateLogin := ts.dial("user=carol&login=L1" + beforeSignOut)
	lateLogin.expectError(proto.CodeRevoked, "")
	if code := lateLogin.expectClose(); code != proto.CloseRevoked {
		t.Fatalf("close code %d, want %d", code, proto.CloseRevoked)
	}

	after := ts.dial("user=bob" + checked())
	other := ts.dial("user=carol&login=L2" + beforeSignOut)
	after.ping("p") // both still open
	other.ping("p")
	if st := ts.hub.Stats(); st.Revoked != 2 {
		t.Fatalf("stats %+v, want the 2 late sessions revoked", st)
	}
	// The revoked sessions were online for a moment; they are not now.
	eventually(t, "only alice's, bob's and carol's later sessions", func() bool {
		return ts.hub.Stats().Sessions == 3
	})
}

// A password change moves its sign-in's sessions to the new sign-in; a
// connection checked before the move and attached after it is moved as it
// attaches, so that signing out of the new sign-in ends it too.
func TestMoveReachesLateAttach(t *testing.T) { forModes(t, testMoveLateAttach) }

func testMoveLateAttach(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{ResumeWindow: time.Hour}, mode)
	checked := func() string { return "&checked=" + strconv.FormatInt(time.Now().UnixNano(), 10) }
	beforeMove := checked()
	if n := ts.hub.MoveLogin("carol", "L1", "L2"); n != 0 {
		t.Fatalf("MoveLogin moved %d sessions; carol had none yet", n)
	}
	// Revoked before the move: the late connection still on L1 must not
	// be taken for one of L2's.
	if n := ts.hub.CloseLogin("carol", "L0", proto.CodeRevoked, "signed out"); n != 0 {
		t.Fatalf("CloseLogin ended %d sessions; carol had none yet", n)
	}
	late := ts.dial("user=carol&login=L1" + beforeMove)
	untouched := ts.dial("user=carol&login=L1" + checked()) // checked after the move
	late.ping("p")
	untouched.ping("p")

	if n := ts.hub.CloseLogin("carol", "L2", proto.CodeRevoked, "signed out"); n != 1 {
		t.Fatalf("signing out of L2 ended %d sessions, want the late one", n)
	}
	late.expectError(proto.CodeRevoked, "")
	if code := late.expectClose(); code != proto.CloseRevoked {
		t.Fatalf("close code %d, want %d", code, proto.CloseRevoked)
	}
	untouched.ping("p")
}

// TestMoveAfterItsSignOut: a sign-out of the sign-in that a password
// change moves sessions to may reach a node before the move does (in a
// cluster they come on different subjects, maybe from different nodes).
// The move then ends what it moves, live or attaching late, instead of
// giving it a sign-in that was signed out of. A revocation that matched
// the session before the move (every sign-in of the user) is not taken
// for one of the new sign-in.
func TestMoveAfterItsSignOut(t *testing.T) {
	ts := newTestServer(t, Config{ResumeWindow: time.Hour})
	checked := func() string { return "&checked=" + strconv.FormatInt(time.Now().UnixNano(), 10) }
	beforeAll := checked()
	live := ts.dial("user=carol&login=L1")
	other := ts.dial("user=carol&login=L0")
	if n := ts.hub.CloseLogin("carol", "L2", proto.CodeRevoked, "signed out"); n != 0 {
		t.Fatalf("signing out of L2 ended %d sessions; carol had none of it yet", n)
	}
	if n := ts.hub.MoveLogin("carol", "L1", "L2"); n != 1 {
		t.Fatalf("MoveLogin moved %d sessions, want 1", n)
	}
	pingNow(live) // answered, if at all, after the revocation's error
	live.expectError(proto.CodeRevoked, "")
	if code := live.expectClose(); code != proto.CloseRevoked {
		t.Fatalf("close code %d, want %d", code, proto.CloseRevoked)
	}
	late := ts.dial("user=carol&login=L1" + beforeAll)
	pingNow(late)
	late.expectError(proto.CodeRevoked, "")
	if code := late.expectClose(); code != proto.CloseRevoked {
		t.Fatalf("late attach: close code %d, want %d", code, proto.CloseRevoked)
	}
	other.ping("p")

	// Every sign-in of dave's ended before dave's moved: the move's
	// sessions (a later sign-in's) live on.
	ts.hub.CloseUser("dave", proto.CodeRevoked, "user disabled")
	dave := ts.dial("user=dave&login=L1")
	if n := ts.hub.MoveLogin("dave", "L1", "L2"); n != 1 {
		t.Fatalf("MoveLogin moved %d of dave's sessions, want 1", n)
	}
	dave.ping("p")
}

// pingNow sends c a ping, which may fail if its connection is closed.
func pingNow(c *tclient) {
	b, _ := json.Marshal(proto.Message{Type: proto.TypePing, ID: "alive?"})
	_ = c.ws.WriteMessage(websocket.TextMessage, b)
}
