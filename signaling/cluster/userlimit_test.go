package cluster

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// threeNodes starts nodes a, b and c with MaxConnsPerUser 2.
func threeNodes(t *testing.T) (a, b, c *testNode) {
	t.Helper()
	urls := natstest.Start(t).ClientURL()
	hcfg := hub.Config{MaxConnsPerUser: 2, ResumeWindow: time.Minute}
	return startNode(t, "a", urls, fastConfig(), hcfg), startNode(t, "b", urls, fastConfig(), hcfg),
		startNode(t, "c", urls, fastConfig(), hcfg)
}

// sees waits until tn's directory shows user with open connections and
// waiting sessions on the other nodes.
func (tn *testNode) sees(user string, open, waiting int) {
	tn.t.Helper()
	eventually(tn.t, tn.name+" to see "+user+"'s sessions elsewhere", func() bool {
		e := tn.node.Elsewhere(user, nil)
		return e.Open == open && len(e.Waiting) == waiting
	})
}

// dialRefused dials tn and returns the code of the error it is sent and
// the close code that follows, instead of a welcome.
func (tn *testNode) dialRefused(query string) (proto.Code, int) {
	tn.t.Helper()
	ws := tn.dialWS(query)
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(wait))
	var code proto.Code
	for {
		_, b, err := ws.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return code, ce.Code
		}
		if err != nil {
			tn.t.Fatalf("dial %s: want a close, got %v", tn.name, err)
		}
		var m proto.Message
		_ = json.Unmarshal(b, &m)
		switch m.Type {
		case proto.TypeWelcome:
			tn.t.Fatalf("dial %s: welcomed past the user's limit", tn.name)
		case proto.TypeError:
			var e proto.Error
			_ = json.Unmarshal(m.Data, &e)
			code = e.Code
		}
	}
}

// TestConnLimitAcrossNodes: with a limit of two, carol's connections on
// a and b are her two: a third on c, or on a, is refused (rate_limited,
// then close 4429), though neither node holds two. Once one of them is
// closed, c takes her again.
func TestConnLimitAcrossNodes(t *testing.T) {
	a, b, c := threeNodes(t)
	onA := a.dial("user=carol")
	b.dial("user=carol")
	c.sees("carol", 2, 0)
	a.sees("carol", 1, 0)
	for _, tn := range []*testNode{c, a} {
		code, closeCode := tn.dialRefused("user=carol")
		if code != proto.CodeRateLimited || closeCode != proto.CloseTooManyConnections {
			t.Fatalf("a third connection on %s: error %q, close %d; want %q and %d", tn.name, code, closeCode,
				proto.CodeRateLimited, proto.CloseTooManyConnections)
		}
	}
	if n, limit := c.hub.UserConns("carol"); n != 2 || limit != 2 {
		t.Fatalf("c counts carol's connections %d of %d, want 2 of 2 (those of a and b)", n, limit)
	}
	c.dial("user=dave") // others are not affected

	_ = onA.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
	<-onA.closed
	c.sees("carol", 1, 0)
	c.dial("user=carol")
}

// TestOldestWaitingSessionOnAnotherNodeEnds: with a limit of two, carol's
// sessions wait for their clients on a (the older) and b. A new session
// on c ends the one on a, the oldest, by asking a, before c welcomes it;
// the one on b stays and still resumes (here on c, a claim). The ended
// one's resume token then starts a new session instead, once carol has
// room for one.
func TestOldestWaitingSessionOnAnotherNodeEnds(t *testing.T) {
	a, b, c := threeNodes(t)
	older := a.dial("user=carol")
	dropSocket(older)
	c.sees("carol", 0, 1)
	newer := b.dial("user=carol")
	dropSocket(newer)
	c.sees("carol", 0, 2)

	third := c.dial("user=carol")
	if a.hub.IsLocal(older.peer()) {
		t.Fatal("a still holds carol's oldest waiting session after c welcomed a session past her limit")
	}
	if !b.hub.IsLocal(newer.peer()) {
		t.Fatal("b's waiting session, the newer, was ended too")
	}
	if back := c.dial("user=carol&resume=" + newer.welcome.ResumeToken); !back.welcome.Resumed || back.peer() != newer.peer() {
		t.Fatalf("b's waiting session did not resume on c: %+v", back.welcome)
	}

	_ = third.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
	<-third.closed
	// b knows of one session of carol's, on c: room for one more. (Not
	// UserConns: below the limit it leaves the other nodes out.)
	eventually(t, "b to see one of carol's sessions left", func() bool { return b.node.SessionsElsewhere("carol") == 1 })
	again := b.dial("user=carol&resume=" + older.welcome.ResumeToken)
	if again.welcome.Resumed || again.peer() == older.peer() {
		t.Fatalf("the session ended to make room was resumed: %+v", again.welcome)
	}
}

// TestOldestWaitingSessionHereEnds: the oldest of carol's waiting
// sessions is on the node where the new one comes (c): c ends it itself,
// and the one waiting on a stays.
func TestOldestWaitingSessionHereEnds(t *testing.T) {
	a, _, c := threeNodes(t)
	older := c.dial("user=carol")
	dropSocket(older)
	eventually(t, "c to see carol's socket drop", func() bool { n, _ := c.hub.UserConns("carol"); return n == 0 })
	newer := a.dial("user=carol")
	dropSocket(newer)
	c.sees("carol", 0, 1)

	c.dial("user=carol")
	if c.hub.IsLocal(older.peer()) {
		t.Fatal("c still holds carol's oldest waiting session")
	}
	if !a.hub.IsLocal(newer.peer()) {
		t.Fatal("a's waiting session, the newer, was ended")
	}
}

// TestResumeAtTheLimitAcrossNodes: a resume is no new session: with
// carol at her limit over a and b, her session on b resumes on c whether
// its socket is still open on b (the claim drops it) or waits, and
// nothing of hers on a is ended for it.
func TestResumeAtTheLimitAcrossNodes(t *testing.T) {
	a, b, c := threeNodes(t)
	onA := a.dial("user=carol")
	onB := b.dial("user=carol")
	c.sees("carol", 2, 0)

	back := c.dial("user=carol&resume=" + onB.welcome.ResumeToken)
	if !back.welcome.Resumed || back.peer() != onB.peer() {
		t.Fatalf("carol's open session on b did not resume on c: %+v", back.welcome)
	}
	dropSocket(back)
	a.sees("carol", 0, 1)
	again := b.dial("user=carol&resume=" + back.welcome.ResumeToken)
	if !again.welcome.Resumed || again.peer() != onB.peer() {
		t.Fatalf("carol's waiting session on c did not resume on b: %+v", again.welcome)
	}
	if !a.hub.IsLocal(onA.peer()) {
		t.Fatal("carol's session on a ended for a resume")
	}
}
