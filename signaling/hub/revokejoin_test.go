package hub

import (
	"testing"

	"github.com/khadga/khadga/proto"
)

// TestRevokeDuringJoin: a join whose session is revoked while the join is
// on its way (here: while Config.RoomPolicy reads the store) does not
// leave the ended session in the room. Revoke's leaveAll has run by the
// time the join takes roomsMu, and nothing would ever take such a ghost
// out: the room would never die, and its place would stay taken.
func TestRevokeDuringJoin(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	policy := func(room string, id Identity, invite string) (int, error) {
		if id.User == "alice" {
			close(entered)
			<-release // a slow store read
		}
		return 0, nil
	}
	ts := newTestServer(t, Config{MaxRoomMembers: 1, RoomPolicy: policy})
	alice := ts.dial("user=alice")
	alice.send(proto.Message{Type: proto.TypeJoin, ID: "1", Room: "lobby"})
	<-entered
	if n := ts.hub.CloseUser("alice", proto.CodeRevoked, "signed out"); n != 1 {
		t.Fatalf("CloseUser ended %d sessions, want 1", n)
	}
	close(release)
	if code := alice.expectClose(); code != proto.CloseRevoked {
		t.Fatalf("alice closed with %d, want %d", code, proto.CloseRevoked)
	}
	// The join ran on alice's reader, which has ended once her connection
	// is no longer counted.
	eventually(t, "alice's connection to end", func() bool { n, _ := ts.hub.UserConns("alice"); return n == 0 })

	if n := ts.hub.RoomMembers("lobby"); n != 0 {
		t.Errorf("room lobby has %d members after its only member was revoked, want 0", n)
	}
	bob := ts.dial("user=bob")
	bob.send(proto.Message{Type: proto.TypeJoin, ID: "2", Room: "lobby"})
	m := bob.next()
	for m.Type == proto.TypePresence {
		m = bob.next()
	}
	if m.Type != proto.TypeJoined {
		t.Fatalf("bob's join answered %s %s: the revoked session still takes the room's place", m.Type, m.Data)
	}
}

// TestReleasedSessionKeepsItsRooms: a leave that the old connection was
// handling when its session went to another node (Release, a resume
// there) does not change the rooms, which are the new node's now: the
// other members see no peer-left.
func TestReleasedSessionKeepsItsRooms(t *testing.T) {
	ts := newTestServer(t, Config{})
	alice := ts.dial("user=alice")
	bob := ts.dial("user=bob")
	alice.join("lobby", "1")
	bob.join("lobby", "2")
	alice.expect(proto.TypePeerJoined)
	var old *conn
	for _, c := range ts.hub.conns.collect(nil) {
		if c.peer() == bob.peer() {
			old = c
		}
	}
	if _, _, err := ts.hub.Release([]byte(hashToken(bob.welcome.ResumeToken)), "bob", "other-node"); err != nil {
		t.Fatal(err)
	}
	ts.hub.leave(old, &proto.Message{Type: proto.TypeLeave, ID: "late", Room: "lobby"})
	if n := ts.hub.RoomMembers("lobby"); n != 2 {
		t.Fatalf("lobby has %d members after a late leave of a released session, want 2", n)
	}
	alice.ping("after")
}
