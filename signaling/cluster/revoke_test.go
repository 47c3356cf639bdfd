package cluster

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// revokeOrder holds tn's handling of revocations and moves (the revoke
// and relogin subjects) as a test needs: hold, if set, runs in the
// handler of each before it is handled, and each one's user is sent on
// the returned channel as its handler starts. A node handles each
// subject's messages in order, one at a time, so that the handler of a
// message starting means the one before it on its subject is done.
func revokeOrder(t *testing.T, tn *testNode, hold func(subject string, r revocation)) <-chan string {
	seen := make(chan string, 64)
	hook := func(m *nats.Msg) {
		if m.Subject != tn.node.subject("revoke") && m.Subject != tn.node.subject("relogin") {
			return
		}
		var r revocation
		_ = json.Unmarshal(m.Data, &r)
		seen <- r.User
		if hold != nil {
			hold(m.Subject, r)
		}
	}
	tn.node.testHookHandle.Store(&hook)
	t.Cleanup(func() { tn.node.testHookHandle.Store(nil) })
	return seen
}

// awaitUser reads seen until user comes.
func awaitUser(t *testing.T, seen <-chan string, user string) {
	t.Helper()
	for {
		select {
		case u := <-seen:
			if u == user {
				return
			}
		case <-time.After(wait):
			t.Fatalf("node never handled a revocation or move for %s", user)
		}
	}
}

// expectRevoked checks that c's session was ended: a ping sent now is
// answered, if at all, only after the revocation's error.
func expectRevoked(t *testing.T, c *client, what string) {
	t.Helper()
	b, _ := json.Marshal(proto.Message{Type: proto.TypePing, ID: "alive?"})
	_ = c.ws.WriteMessage(websocket.TextMessage, b) // may fail: closed
	m := c.expect(proto.TypeError)
	var e proto.Error
	if err := json.Unmarshal(m.Data, &e); err != nil || e.Code != proto.CodeRevoked {
		t.Fatalf("%s: got error %s, want revoked", what, m.Data)
	}
}

// TestSignOutBeforeTheMoveReachesTheNode: a password change moves its
// sign-in's sessions to a new sign-in (MoveLogin, on the relogin
// subject), and signing out of the new sign-in ends them (CloseLogin, on
// the revoke subject). A node may handle the two in the other order: they
// come on different subjects, which it handles on different goroutines,
// and from different nodes if the sign-out was served by another. Then
// the sign-out found nothing of the new sign-in, and the move that came
// after gave bob's session the sign-in just signed out of: it lived on
// for as long as its socket stayed open. Here node b's handling of the
// move is held until it has handled the sign-out.
func TestSignOutBeforeTheMoveReachesTheNode(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{})
	bob := b.dial("user=bob&login=L1")

	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before the nodes stop: Close waits for handlers
	seen := revokeOrder(t, b, func(subject string, r revocation) {
		if subject == b.node.subject("relogin") && r.User == "bob" {
			<-release
		}
	})

	if n := a.node.MoveLogin("bob", "L1", "L2"); n != 0 { // the password change, on a
		t.Fatalf("a moved %d sessions; bob's is b's", n)
	}
	awaitUser(t, seen, "bob") // b holds the move
	a.node.CloseLogin("bob", "L2", proto.CodeRevoked, "signed out")
	a.node.CloseUser("zed", proto.CodeRevoked, "marker")
	awaitUser(t, seen, "zed") // b has handled bob's sign-out: nothing of L2's
	free()
	a.node.MoveLogin("zed", "X", "Y")
	awaitUser(t, seen, "zed") // b has handled bob's move
	expectRevoked(t, bob, "bob's socket after signing out of the sign-in it moved to")
}
