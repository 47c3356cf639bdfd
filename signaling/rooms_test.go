package signaling_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// roomSettings is the API's answer about a room.
type roomSettings struct {
	Room        string    `json:"room"`
	Owner       string    `json:"owner"`
	MaxMembers  int       `json:"max_members"`
	Invite      bool      `json:"invite"`
	Created     time.Time `json:"created"`
	InviteToken string    `json:"invite_token"`
}

// call sends method path with a bearer token and a JSON body (nil: none)
// and returns the status, the body and the Retry-After header.
func call(t *testing.T, s *signalingtest.Server, method, path, token string, body any) (int, []byte, string) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out, resp.Header.Get("Retry-After")
}

// settings decodes a room answer, failing unless the status is want.
func settings(t *testing.T, code int, body []byte, want int) roomSettings {
	t.Helper()
	if code != want {
		t.Fatalf("got %d %s, want %d", code, body, want)
	}
	var rs roomSettings
	if err := json.Unmarshal(body, &rs); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	return rs
}

type roomReq struct {
	MaxMembers int  `json:"max_members"`
	Invite     bool `json:"invite"`
}

// The rooms API: a signed-in user claims a free room name and owns it;
// only the owner changes it or makes a new invite, the owner or an admin
// releases it; each user owns a bounded number; bad requests are refused
// with a specific answer and change nothing (issue 14, point 12).
func TestRoomsAPI(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{MaxOwnedRooms: 2, MaxRoomMembers: 20}})
	alice := s.User(t, "alice").AccessToken
	bob := s.User(t, "bob").AccessToken

	code, body, _ := call(t, s, "PUT", "/api/rooms/standup", "", roomReq{Invite: true})
	assertError(t, code, body, http.StatusUnauthorized, "unauthorized")
	code, body, _ = call(t, s, "GET", "/api/rooms/standup", alice, nil)
	assertError(t, code, body, http.StatusNotFound, "not_found")

	code, body, _ = call(t, s, "PUT", "/api/rooms/standup", alice, roomReq{MaxMembers: 3, Invite: true})
	rs := settings(t, code, body, http.StatusCreated)
	if rs.Room != "standup" || rs.Owner != "alice" || rs.MaxMembers != 3 || !rs.Invite || rs.Created.IsZero() ||
		proto.ValidInvite(rs.InviteToken) != nil || len(rs.InviteToken) < 22 {
		t.Fatalf("claim answered %+v", rs)
	}
	first := rs.InviteToken

	// Anyone signed in sees the settings, never the token.
	code, body, _ = call(t, s, "GET", "/api/rooms/standup", bob, nil)
	if rs := settings(t, code, body, http.StatusOK); rs.Owner != "alice" || !rs.Invite || rs.InviteToken != "" || bytes.Contains(body, []byte(first)) {
		t.Fatalf("GET answered %s", body)
	}

	t.Run("only the owner changes it", func(t *testing.T) {
		code, body, _ := call(t, s, "PUT", "/api/rooms/standup", bob, roomReq{})
		assertError(t, code, body, http.StatusForbidden, "room_owned")
		code, body, _ = call(t, s, "DELETE", "/api/rooms/standup", bob, nil)
		assertError(t, code, body, http.StatusForbidden, "room_owned")
		code, body, _ = call(t, s, "POST", "/api/rooms/standup/invite", bob, nil)
		assertError(t, code, body, http.StatusForbidden, "room_owned")
		code, body, _ = call(t, s, "POST", "/api/rooms/nobodys/invite", bob, nil)
		assertError(t, code, body, http.StatusNotFound, "not_found")
	})

	t.Run("bad requests change nothing", func(t *testing.T) {
		for _, tc := range []struct {
			name, path string
			body       any
			status     int
			code       string
		}{
			{"cap over the server's", "/api/rooms/standup", roomReq{MaxMembers: 21}, 400, "bad_request"},
			{"negative cap", "/api/rooms/standup", roomReq{MaxMembers: -1}, 400, "bad_request"},
			{"bad name", "/api/rooms/st%20andup", roomReq{}, 400, "bad_request"},
			{"long name", "/api/rooms/" + string(bytes.Repeat([]byte("r"), proto.MaxRoomName+1)), roomReq{}, 400, "bad_request"},
			{"unknown field", "/api/rooms/standup", map[string]any{"owner": "bob"}, 400, "bad_request"},
			{"cap not a number", "/api/rooms/standup", map[string]any{"max_members": "3"}, 400, "bad_request"},
		} {
			code, body, _ := call(t, s, "PUT", tc.path, alice, tc.body)
			if code != tc.status || !bytes.Contains(body, []byte(`"code":"`+tc.code+`"`)) {
				t.Errorf("%s: %d %s, want %d %s", tc.name, code, body, tc.status, tc.code)
			}
		}
		code, body := s.Post(t, "/api/rooms/standup/invite", "", "Authorization", "Bearer "+alice, "Content-Type", "text/plain")
		if code != http.StatusOK { // no body is read: the type does not matter
			t.Errorf("invite with a text type: %d %s", code, body)
		}
		req, _ := http.NewRequest("PUT", s.URL+"/api/rooms/standup", bytes.NewReader([]byte(`{}`)))
		req.Header.Set("Authorization", "Bearer "+alice)
		resp, err := s.Client.Do(req)
		if err != nil || resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("PUT without a JSON content type: %v %v, want 415", resp.Status, err)
		}
		resp.Body.Close()
		code, body, _ = call(t, s, "GET", "/api/rooms/standup", alice, nil)
		if rs := settings(t, code, body, 200); rs.MaxMembers != 3 || !rs.Invite {
			t.Fatalf("refused requests changed the room: %s", body)
		}
	})

	t.Run("the owner's changes", func(t *testing.T) {
		// invite:true keeps the current token: no new one in the answer.
		code, body, _ := call(t, s, "PUT", "/api/rooms/standup", alice, roomReq{MaxMembers: 5, Invite: true})
		if rs := settings(t, code, body, http.StatusOK); rs.MaxMembers != 5 || !rs.Invite || rs.InviteToken != "" {
			t.Fatalf("change answered %s", body)
		}
		code, body, _ = call(t, s, "POST", "/api/rooms/standup/invite", alice, nil)
		rs := settings(t, code, body, http.StatusOK)
		if rs.InviteToken == "" || rs.InviteToken == first || !rs.Invite {
			t.Fatalf("new invite answered %s", body)
		}
		code, body, _ = call(t, s, "PUT", "/api/rooms/standup", alice, roomReq{})
		if rs := settings(t, code, body, http.StatusOK); rs.Invite || rs.MaxMembers != 0 {
			t.Fatalf("dropping the invite answered %s", body)
		}
	})

	t.Run("each user owns a bounded number", func(t *testing.T) {
		code, body, _ := call(t, s, "PUT", "/api/rooms/second", alice, roomReq{})
		settings(t, code, body, http.StatusCreated)
		code, body, _ = call(t, s, "PUT", "/api/rooms/third", alice, roomReq{})
		assertError(t, code, body, http.StatusConflict, "too_many_rooms")
		code, body, _ = call(t, s, "GET", "/api/rooms", alice, nil)
		var mine struct {
			Rooms    []roomSettings `json:"rooms"`
			MaxOwned int            `json:"max_owned"`
		}
		if json.Unmarshal(body, &mine); code != 200 || len(mine.Rooms) != 2 || mine.Rooms[0].Room != "second" || mine.MaxOwned != 2 {
			t.Fatalf("GET /api/rooms: %d %s", code, body)
		}
		code, body, _ = call(t, s, "DELETE", "/api/rooms/second", alice, nil)
		if code != http.StatusNoContent {
			t.Fatalf("release: %d %s", code, body)
		}
		code, body, _ = call(t, s, "DELETE", "/api/rooms/second", alice, nil)
		assertError(t, code, body, http.StatusNotFound, "not_found")
		code, body, _ = call(t, s, "PUT", "/api/rooms/third", alice, roomReq{})
		settings(t, code, body, http.StatusCreated)
	})

	t.Run("an admin releases any room", func(t *testing.T) {
		root, _, err := s.Keys().IssueAccess(auth.Claims{User: "root", Role: proto.RoleAdmin}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		code, body, _ := call(t, s, "PUT", "/api/rooms/rootroom", root, roomReq{})
		assertError(t, code, body, http.StatusForbidden, "unauthorized") // root is no account
		code, body, _ = call(t, s, "DELETE", "/api/rooms/third", root, nil)
		if code != http.StatusNoContent {
			t.Fatalf("admin release: %d %s", code, body)
		}
		code, body, _ = call(t, s, "PUT", "/api/rooms/third", bob, roomReq{})
		if rs := settings(t, code, body, http.StatusCreated); rs.Owner != "bob" {
			t.Fatalf("bob's claim of the released room: %s", body)
		}
	})
}

// Room changes are rate-limited per user, so that nobody claims, releases
// and claims again in a loop; the limit refills with time.
func TestRoomWritesRateLimited(t *testing.T) {
	clk := &clock{now: time.Now()}
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{Now: clk.Now}})
	alice := s.User(t, "alice").AccessToken
	for i := range 10 {
		code, body, _ := call(t, s, "PUT", "/api/rooms/loop", alice, roomReq{MaxMembers: i + 1})
		if code != http.StatusOK && code != http.StatusCreated {
			t.Fatalf("change %d: %d %s", i, code, body)
		}
	}
	code, body, retry := call(t, s, "DELETE", "/api/rooms/loop", alice, nil)
	assertError(t, code, body, http.StatusTooManyRequests, "rate_limited")
	if retry == "" {
		t.Fatal("429 without Retry-After")
	}
	clk.add(2 * time.Minute)
	if code, body, _ := call(t, s, "DELETE", "/api/rooms/loop", alice, nil); code != http.StatusNoContent {
		t.Fatalf("after the limit refilled: %d %s", code, body)
	}
}

// Joining an owned room over the WebSocket: an invite is needed when the
// owner asks for one (invite_required, bad_invite for a wrong or replaced
// one); the owner and a bot granted the room by name join without; the
// owner's cap counts people, and not the owner; a room without settings,
// or released, behaves as before (issue 14, point 12).
func TestRoomJoinPolicy(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	toks := map[string]string{}
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		toks[u] = s.User(t, u).AccessToken
	}
	code, body, _ := call(t, s, "PUT", "/api/rooms/standup", toks["alice"], roomReq{MaxMembers: 2, Invite: true})
	invite := settings(t, code, body, http.StatusCreated).InviteToken

	join := func(c *signalingtest.Client, id, invite string) {
		t.Helper()
		m := &proto.Message{Type: proto.TypeJoin, ID: id, Room: "standup"}
		if invite != "" {
			m.Data = json.RawMessage(fmt.Sprintf(`{"invite":%q}`, invite))
		}
		c.Send(m)
	}
	bob := s.Connect(t, toks["bob"], nil)
	join(bob, "1", "")
	bob.ExpectError(proto.CodeInviteRequired, "1")
	join(bob, "2", "wrongwrongwrongwrongwr")
	bob.ExpectError(proto.CodeBadInvite, "2")
	join(bob, "3", invite)
	bob.Expect(proto.TypeJoined)

	alice := s.Connect(t, toks["alice"], nil)
	if peers := alice.Join("standup"); len(peers) != 1 {
		t.Fatalf("the owner sees %d members, want bob", len(peers))
	}
	bob.Expect(proto.TypePeerJoined)
	// The cap is 2 people: bob and alice. carol is refused; bob's second
	// session fits, as he counts once.
	carol := s.Connect(t, toks["carol"], nil)
	join(carol, "1", invite)
	carol.ExpectError(proto.CodeRoomFull, "1")
	bob2 := s.Connect(t, toks["bob"], nil)
	join(bob2, "1", invite)
	bob2.Expect(proto.TypeJoined)

	// A new invite replaces the old one.
	code, body, _ = call(t, s, "POST", "/api/rooms/standup/invite", toks["alice"], nil)
	fresh := settings(t, code, body, http.StatusOK).InviteToken
	for _, c := range []*signalingtest.Client{bob, bob2} {
		c.Send(&proto.Message{Type: proto.TypeLeave, ID: "9", Room: "standup"})
		for m := c.Next(); m.Type != proto.TypeAck; m = c.Next() {
		}
	}
	join(carol, "2", invite)
	carol.ExpectError(proto.CodeBadInvite, "2")
	join(carol, "3", fresh)
	carol.Expect(proto.TypeJoined)

	// The room is full again (alice, carol), but a bot token granted the
	// room by name needs no invite, and the owner's cap does not hold it
	// back.
	rec, _, err := s.Keys().IssueAccess(auth.Claims{User: "rec", Role: proto.RoleRecorder, Rooms: []string{"standup"}}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if peers := s.Connect(t, rec, nil).Join("standup"); len(peers) != 2 {
		t.Fatalf("the bot sees %d members, want alice and carol", len(peers))
	}

	// Rooms without settings, and released ones, are as before; an invite
	// to them is ignored.
	dave := s.Connect(t, toks["dave"], nil)
	dave.Join("open")
	dave.Send(&proto.Message{Type: proto.TypeJoin, ID: "x", Room: "open2", Data: json.RawMessage(`{"invite":"whatever"}`)})
	dave.Expect(proto.TypeJoined)
	if code, body, _ := call(t, s, "DELETE", "/api/rooms/standup", toks["alice"], nil); code != http.StatusNoContent {
		t.Fatalf("release: %d %s", code, body)
	}
	dave.Join("standup")
}
