package hub

import (
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/khadga/khadga/proto"
)

// A room's member limit counts people: one user's sessions take one place,
// so a user who knows a room's name cannot fill it with sessions (issue
// 14, point 12), and the place is free again when the last one leaves.
func TestRoomCountsPeopleNotSessions(t *testing.T) { forModes(t, testRoomCountsPeopleNotSessions) }

func testRoomCountsPeopleNotSessions(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{MaxRoomMembers: 2}, mode)
	var squat []*tclient
	for i := range 5 {
		c := ts.dial("user=squatter")
		if got := c.join("lobby", "1"); len(got) != i {
			t.Fatalf("session %d sees %d members, want %d", i, len(got), i)
		}
		squat = append(squat, c)
	}
	alice := ts.dial("user=alice")
	if got := alice.join("lobby", "1"); len(got) != 5 {
		t.Fatalf("alice sees %d members, want the squatter's 5 sessions", len(got))
	}
	bob := ts.dial("user=bob")
	bob.send(proto.Message{Type: proto.TypeJoin, ID: "2", Room: "lobby"})
	bob.expectError(proto.CodeRoomFull, "2")

	// A second session of someone inside takes no new place.
	alice2 := ts.dial("user=alice")
	alice2.join("lobby", "1")

	// The squatter's place stays taken while any of its sessions is in.
	for _, c := range squat[1:] {
		c.send(proto.Message{Type: proto.TypeLeave, ID: "l", Room: "lobby"})
		c.answer(proto.TypeAck, "l")
	}
	bob.send(proto.Message{Type: proto.TypeJoin, ID: "3", Room: "lobby"})
	bob.expectError(proto.CodeRoomFull, "3")

	// Leaving with the last session frees the place.
	squat[0].send(proto.Message{Type: proto.TypeLeave, ID: "l", Room: "lobby"})
	squat[0].answer(proto.TypeAck, "l")
	if got := bob.join("lobby", "4"); len(got) != 2 {
		t.Fatalf("bob sees %d members, want alice's 2 sessions", len(got))
	}
	if n := ts.hub.Stats().Errors[proto.CodeRoomFull]; n != 2 {
		t.Fatalf("room_full counted %d times, want 2", n)
	}
}

// policyCall is one call of a test's Config.RoomPolicy.
type policyCall struct {
	room   string
	id     Identity
	invite string
}

// The hub asks Config.RoomPolicy before a session joins a room it is not
// in, with the join's invite, and no lock held: the policy's
// ProtocolError is answered with its code and message, another error with
// internal, and its cap lowers (never raises) the member limit.
func TestRoomPolicy(t *testing.T) {
	var mu sync.Mutex
	var calls []policyCall
	policy := func(room string, id Identity, invite string) (int, error) {
		mu.Lock()
		calls = append(calls, policyCall{room, id, invite})
		mu.Unlock()
		switch room {
		case "private":
			switch {
			case id.User == "owner":
				return 0, nil
			case invite == "":
				return 0, &proto.ProtocolError{Code: proto.CodeInviteRequired, Message: "private needs an invite"}
			case invite != "good":
				return 0, &proto.ProtocolError{Code: proto.CodeBadInvite, Message: "not private's invite"}
			}
		case "small":
			return 1, nil
		case "huge":
			return 1000, nil
		case "broken":
			return 0, errors.New("store unavailable")
		}
		return 0, nil
	}
	ncalls := func() int { mu.Lock(); defer mu.Unlock(); return len(calls) }
	ts := newTestServer(t, Config{MaxRoomMembers: 2, RoomPolicy: policy})

	guest := ts.dial("user=guest")
	guest.send(proto.Message{Type: proto.TypeJoin, ID: "1", Room: "private"})
	if e := guest.expectError(proto.CodeInviteRequired, "1"); e.Message != "private needs an invite" {
		t.Fatalf("message %q, want the policy's", e.Message)
	}
	guest.send(proto.Message{Type: proto.TypeJoin, ID: "2", Room: "private", Data: json.RawMessage(`{"invite":"bad"}`)})
	guest.expectError(proto.CodeBadInvite, "2")
	guest.sendRaw(`{"type":"join","id":"3","room":"private","data":{"invite":"not valid!"}}`)
	guest.expectError(proto.CodeBadMessage, "3")
	guest.send(proto.Message{Type: proto.TypeJoin, ID: "4", Room: "private", Data: json.RawMessage(`{"invite":"good"}`)})
	guest.expect(proto.TypeJoined)
	before := ncalls()
	guest.join("private", "5") // already in: answered without asking
	if n := ncalls(); n != before {
		t.Fatalf("policy asked %d more times for a session already in the room", n-before)
	}

	owner := ts.dial("user=owner&role=admin&rooms=private,small")
	if got := owner.join("private", "1"); len(got) != 1 {
		t.Fatalf("owner sees %d members, want the guest", len(got))
	}
	mu.Lock()
	last := calls[len(calls)-1]
	mu.Unlock()
	if last.room != "private" || last.invite != "" || last.id.User != "owner" || last.id.Role != proto.RoleAdmin ||
		!slices.Equal(last.id.Rooms, []string{"private", "small"}) {
		t.Fatalf("policy called with %+v, want the owner's identity and no invite", last)
	}

	// The policy's cap lowers the limit; a user's second session still fits.
	guest.send(proto.Message{Type: proto.TypeJoin, ID: "6", Room: "small"})
	guest.answer(proto.TypeJoined, "6")
	ts.dial("user=guest").join("small", "1")
	owner.send(proto.Message{Type: proto.TypeJoin, ID: "2", Room: "small"})
	if e := owner.expectError(proto.CodeRoomFull, "2"); e.Message != "room small is full (1 people)" {
		t.Fatalf("room_full message %q", e.Message)
	}
	// A cap above the server's limit does not raise it.
	for _, u := range []string{"a1", "a2"} {
		ts.dial("user="+u).join("huge", "1")
	}
	a3 := ts.dial("user=a3")
	a3.send(proto.Message{Type: proto.TypeJoin, ID: "1", Room: "huge"})
	a3.expectError(proto.CodeRoomFull, "1")

	// Any other error is internal, and nothing is joined.
	a3.send(proto.Message{Type: proto.TypeJoin, ID: "2", Room: "broken"})
	a3.expectError(proto.CodeInternal, "2")
	a3.send(proto.Message{Type: proto.TypeLeave, ID: "3", Room: "broken"})
	a3.expectError(proto.CodeNotInRoom, "3")
	st := ts.hub.Stats()
	if st.Errors[proto.CodeInviteRequired] != 1 || st.Errors[proto.CodeBadInvite] != 1 || st.Errors[proto.CodeInternal] != 1 {
		t.Fatalf("error counts %v", st.Errors)
	}
}

// answer returns the answer to request ref, skipping room events and
// presence, and fails unless it has type typ.
func (c *tclient) answer(typ, ref string) *proto.Message {
	c.t.Helper()
	for {
		m := c.next()
		switch m.Type {
		case proto.TypePresence, proto.TypePeerJoined, proto.TypePeerLeft:
			continue
		}
		if m.Type != typ || m.Ref != ref {
			c.t.Fatalf("got %s %s (ref %q), want %s answering %q", m.Type, m.Data, m.Ref, typ, ref)
		}
		return m
	}
}
