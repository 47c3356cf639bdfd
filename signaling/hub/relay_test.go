package hub

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/khadga/khadga/proto"
)

func TestRelayBetweenRoomMembers(t *testing.T) { forModes(t, testRelayBetweenRoomMembers) }

func testRelayBetweenRoomMembers(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{}, mode)
	alice := ts.dial("user=alice")
	bob := ts.dial("user=bob&role=recorder")
	if alice.peer() == "" || alice.peer() == bob.peer() {
		t.Fatalf("peer ids %q and %q", alice.peer(), bob.peer())
	}
	if alice.welcome.ResumeToken == "" || alice.welcome.ICEServers == nil || alice.welcome.Resumed {
		t.Fatalf("welcome %+v", alice.welcome)
	}

	if peers := alice.join("lobby", "j1"); len(peers) != 0 {
		t.Fatalf("alice joined an empty room, got peers %v", peers)
	}
	peers := bob.join("lobby", "j2")
	if len(peers) != 1 || peers[0] != (proto.Member{Peer: alice.peer(), User: "alice", Role: proto.RoleUser}) {
		t.Fatalf("bob's joined peers %v", peers)
	}
	ev := alice.expect(proto.TypePeerJoined)
	if got := decodeMember(t, ev); got != (proto.Member{Peer: bob.peer(), User: "bob", Role: proto.RoleRecorder}) || ev.Room != "lobby" {
		t.Fatalf("peer-joined %v room %q", got, ev.Room)
	}

	offer := `{"description":{"type":"offer","sdp":"v=0\r\n"}}`
	bob.signal(alice.peer(), "", "s1", offer)
	m := alice.expect(proto.TypeSignal)
	if m.From != bob.peer() || string(m.Data) != offer || m.Room != "" {
		t.Fatalf("alice got signal from %q room %q data %s", m.From, m.Room, m.Data)
	}
	answer := `{"description":{"type":"answer","sdp":"v=0\r\n"}}`
	alice.signal(bob.peer(), "lobby", "s2", answer)
	m = bob.expect(proto.TypeSignal)
	if m.From != alice.peer() || string(m.Data) != answer || m.Room != "lobby" {
		t.Fatalf("bob got signal from %q room %q data %s", m.From, m.Room, m.Data)
	}
	// The forwarded message must decode with proto.Decode, as a Go client would.
	b, _ := json.Marshal(m)
	if _, err := proto.Decode(b, 0); err != nil {
		t.Fatalf("forwarded signal does not decode: %v", err)
	}

	bob.send(proto.Message{Type: proto.TypeLeave, ID: "l1", Room: "lobby"})
	if ack := bob.expect(proto.TypeAck); ack.Ref != "l1" {
		t.Fatalf("ack ref %q", ack.Ref)
	}
	left := alice.expect(proto.TypePeerLeft)
	var pl proto.PeerLeft
	_ = json.Unmarshal(left.Data, &pl)
	if pl.Peer != bob.peer() || left.Room != "lobby" {
		t.Fatalf("peer-left %s", left.Data)
	}
	st := ts.hub.Stats()
	if st.SignalsRelayed != 2 || st.BytesRelayed == 0 || st.Sessions != 2 || st.Rooms != 1 || st.Members != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSignalOutsideSharedRoomIsRefused(t *testing.T) {
	forModes(t, testSignalOutsideSharedRoomIsRefused)
}

func testSignalOutsideSharedRoomIsRefused(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{}, mode)
	alice := ts.dial("user=alice")
	bob := ts.dial("user=bob")
	carol := ts.dial("user=carol")
	alice.join("a", "1")
	bob.join("a", "1")
	alice.expect(proto.TypePeerJoined)
	carol.join("c", "1")
	alice.join("x", "2")

	alice.signal(carol.peer(), "", "s1", `{"candidate":{"candidate":""}}`)
	alice.expectError(proto.CodeNotInRoom, "s1")
	// alice and bob share room a, not room x.
	alice.signal(bob.peer(), "x", "s2", `{}`)
	alice.expectError(proto.CodeNotInRoom, "s2")
	alice.signal("nosuchpeer", "", "s3", `{}`)
	alice.expectError(proto.CodeUnknownPeer, "s3")

	// A delivered signal would be queued before alice got her error, so
	// carol's and bob's next messages being their pongs proves nothing was
	// delivered.
	carol.ping("p")
	bob.ping("p")
	if st := ts.hub.Stats(); st.SignalsRelayed != 0 || st.Errors[proto.CodeNotInRoom] != 2 || st.Errors[proto.CodeUnknownPeer] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSpoofedFromIsRefused(t *testing.T) { forModes(t, testSpoofedFromIsRefused) }

func testSpoofedFromIsRefused(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{}, mode)
	alice := ts.dial("user=alice")
	bob := ts.dial("user=bob")
	alice.join("r", "1")
	bob.join("r", "1")
	alice.expect(proto.TypePeerJoined)
	bob.sendRaw(`{"type":"signal","id":"s1","to":"` + alice.peer() + `","from":"` + alice.peer() + `","data":{}}`)
	bob.expectError(proto.CodeBadMessage, "s1")
	alice.ping("p") // nothing reached alice
	bob.signal(alice.peer(), "", "s2", `{"x":1}`)
	if m := alice.expect(proto.TypeSignal); m.From != bob.peer() {
		t.Fatalf("from %q", m.From)
	}
}

func TestBadInputGetsErrorsAndConnectionKeepsWorking(t *testing.T) {
	forModes(t, testBadInputGetsErrorsAndConnectionKeepsWorking)
}

func testBadInputGetsErrorsAndConnectionKeepsWorking(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{ReadLimit: 4096}, mode)
	alice := ts.dial("user=alice")
	bob := ts.dial("user=bob")
	alice.join("r", "1")
	bob.join("r", "1")
	alice.expect(proto.TypePeerJoined)

	cases := []struct {
		name, msg string
		binary    bool
		code      proto.Code
		ref       string
	}{
		{"malformed JSON", `{"type":"signal",`, false, proto.CodeBadMessage, ""},
		{"not an object", `[1,2]`, false, proto.CodeBadMessage, ""},
		{"unknown field", `{"type":"ping","bogus":1}`, false, proto.CodeBadMessage, ""},
		{"unknown type", `{"type":"dance","id":"u1"}`, false, proto.CodeUnknownType, "u1"},
		{"server type", `{"type":"welcome","id":"u2"}`, false, proto.CodeUnknownType, "u2"},
		{"newer version", `{"type":"ping","v":2,"id":"v1"}`, false, proto.CodeUnsupportedVersion, "v1"},
		{"binary frame", `{"type":"ping","id":"b1"}`, true, proto.CodeBadMessage, ""},
		{"bad room", `{"type":"join","id":"r1","room":"a b"}`, false, proto.CodeBadMessage, "r1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			alice.t = t
			defer func() { alice.t = ts.t }()
			if tc.binary {
				if err := alice.ws.WriteMessage(2, []byte(tc.msg)); err != nil {
					t.Fatal(err)
				}
			} else {
				alice.sendRaw(tc.msg)
			}
			alice.expectError(tc.code, tc.ref)
			alice.ping("after-" + tc.name)
		})
	}
	alice.signal(bob.peer(), "", "s1", `{"ok":true}`)
	bob.expect(proto.TypeSignal)

	// Oversized: too_large, then close 1009. The others keep working.
	alice.sendRaw(`{"type":"signal","to":"` + bob.peer() + `","data":{"pad":"` + strings.Repeat("x", 5000) + `"}}`)
	alice.expectError(proto.CodeTooLarge, "")
	if code := alice.expectClose(); code != 1009 {
		t.Fatalf("close code %d, want 1009", code)
	}
	carol := ts.dial("user=carol")
	carol.join("r", "2")
	carol.signal(bob.peer(), "", "s2", `{}`)
	if m := bob.expect(proto.TypePeerJoined); decodeMember(t, m).Peer != carol.peer() {
		t.Fatal("wrong peer-joined")
	}
	if m := bob.expect(proto.TypeSignal); m.From != carol.peer() {
		t.Fatalf("from %q", m.From)
	}
	if n := ts.hub.Stats().Errors[proto.CodeTooLarge]; n != 1 {
		t.Fatalf("too_large count %d", n)
	}
}

func TestRepeatedAbuseCloses(t *testing.T) { forModes(t, testRepeatedAbuseCloses) }

func testRepeatedAbuseCloses(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{AbuseLimit: 3}, mode)
	c := ts.dial("user=alice")
	for i := 0; i < 10; i++ {
		if err := c.ws.WriteMessage(1, []byte("nope")); err != nil {
			break // the server may already have closed
		}
	}
	for i := 0; i < 3; i++ {
		c.expectError(proto.CodeBadMessage, "")
	}
	if code := c.expectClose(); code != 1008 {
		t.Fatalf("close code %d, want 1008", code)
	}
}

func TestRateLimit(t *testing.T) { forModes(t, testRateLimit) }

func testRateLimit(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{MessageRate: 0.5, MessageBurst: 2, AbuseLimit: 100}, mode)
	c := ts.dial("user=alice")
	for _, id := range []string{"1", "2", "3"} {
		c.send(proto.Message{Type: proto.TypePing, ID: id})
	}
	c.expect(proto.TypePong)
	c.expect(proto.TypePong)
	c.expectError(proto.CodeRateLimited, "3")
	if n := ts.hub.Stats().Errors[proto.CodeRateLimited]; n != 1 {
		t.Fatalf("rate_limited count %d", n)
	}
}

func TestRoomGrantsAndLimits(t *testing.T) { forModes(t, testRoomGrantsAndLimits) }

func testRoomGrantsAndLimits(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{MaxRoomsPerSession: 2, MaxRoomMembers: 2}, mode)
	g := ts.dial("user=guest&rooms=a,b")
	g.send(proto.Message{Type: proto.TypeJoin, ID: "1", Room: "secret"})
	g.expectError(proto.CodeUnauthorized, "1")
	g.join("a", "2")
	g.join("b", "3")

	free := ts.dial("user=free")
	free.join("x", "1")
	free.join("y", "2")
	free.send(proto.Message{Type: proto.TypeJoin, ID: "3", Room: "z"})
	free.expectError(proto.CodeTooManyRooms, "3")
	free.join("x", "4") // joining again is not a new room

	other := ts.dial("user=other")
	other.join("a", "1") // a: guest, other
	third := ts.dial("user=third")
	third.send(proto.Message{Type: proto.TypeJoin, ID: "1", Room: "a"})
	third.expectError(proto.CodeRoomFull, "1")
	st := ts.hub.Stats()
	if st.Errors[proto.CodeUnauthorized] != 1 || st.Errors[proto.CodeRoomFull] != 1 || st.Errors[proto.CodeTooManyRooms] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A sender pays for the bytes it sends: past its signal byte rate its
// signals are refused with rate_limited, and the target sees none of them.
func TestSignalByteRate(t *testing.T) { forModes(t, testSignalByteRate) }

func testSignalByteRate(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{SignalBytesRate: 1 << 10, SignalBurstBytes: 64 << 10, AbuseLimit: 100}, mode)
	alice := ts.dial("user=alice")
	bob := ts.dial("user=bob")
	alice.join("r", "1")
	bob.join("r", "1")
	alice.expect(proto.TypePeerJoined)
	data := `{"pad":"` + strings.Repeat("x", 20<<10) + `"}`
	for i := range 3 { // 60 KiB: within the burst
		bob.signal(alice.peer(), "", fmt.Sprint("ok", i), data)
		alice.expect(proto.TypeSignal)
	}
	bob.signal(alice.peer(), "", "over", data)
	bob.expectError(proto.CodeRateLimited, "over")
	bob.signal(alice.peer(), "", "small", `{"i":1}`) // what is left of the burst still allows this
	if m := alice.expect(proto.TypeSignal); string(m.Data) != `{"i":1}` {
		t.Fatalf("alice got %s, want only the small signal after the refused one", m.Data)
	}
}

// TestJoinLeaveRate: joins and leaves have a bucket of their own, of two
// per room a session may be in, refilled at roomChangeRate. Each reaches
// every member of the room uncoalesced: at the message rate, one user
// flapping in and out of a room filled every member's queue and dropped
// members on slower links as slow consumers.
func TestJoinLeaveRate(t *testing.T) { forModes(t, testJoinLeaveRate) }

func testJoinLeaveRate(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{MaxRoomsPerSession: 2, AbuseLimit: 100}, mode)
	alice := ts.dial("user=alice")
	alice.join("lobby", "j")
	mallory := ts.dial("user=mallory")
	for i, typ := range []string{proto.TypeJoin, proto.TypeLeave, proto.TypeJoin, proto.TypeLeave, proto.TypeJoin} {
		mallory.send(proto.Message{Type: typ, ID: fmt.Sprint(i + 1), Room: "lobby"})
	}
	m := mallory.next()
	for m.Type != proto.TypeError {
		m = mallory.next()
	}
	var e proto.Error
	if err := json.Unmarshal(m.Data, &e); err != nil || e.Code != proto.CodeRateLimited || m.Ref != "5" {
		t.Fatalf("error %s (ref %q), want rate_limited for the 5th: the burst is 4", m.Data, m.Ref)
	}
	alice.send(proto.Message{Type: proto.TypePing, ID: "p"})
	events := 0
	for m := alice.next(); m.Type != proto.TypePong; m = alice.next() {
		if m.Type == proto.TypePeerJoined || m.Type == proto.TypePeerLeft {
			events++
		}
	}
	if events != 4 {
		t.Fatalf("alice got %d peer-joined and peer-left, want the 4 of the burst", events)
	}
}
