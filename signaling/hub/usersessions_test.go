package hub

import (
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
