package proto

import (
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	big := `{"type":"signal","to":"p","data":{"x":"` + strings.Repeat("a", MaxMessageSize) + `"}}`
	tests := []struct {
		name string
		in   string
		code Code // "" means no error
	}{
		{"signal", `{"type":"signal","id":"1","to":"p2","data":{"description":{"type":"offer","sdp":"v=0"}}}`, ""},
		{"ping", `{"type":"ping","id":"9"}`, ""},
		{"current version", `{"type":"ping","v":1}`, ""},
		{"newer version", `{"type":"ping","v":2}`, CodeUnsupportedVersion},
		{"negative version", `{"type":"ping","v":-1}`, CodeUnsupportedVersion},
		{"truncated", `{"type":"sig`, CodeBadMessage},
		{"not an object", `[1,2]`, CodeBadMessage},
		{"unknown field", `{"type":"ping","extra":1}`, CodeBadMessage},
		{"wrong type", `{"type":7}`, CodeBadMessage},
		{"missing type", `{"id":"1"}`, CodeBadMessage},
		{"trailing data", `{"type":"ping"} {"type":"ping"}`, CodeBadMessage},
		{"invalid utf8", "{\"type\":\"ping\",\"id\":\"\xff\"}", CodeBadMessage},
		{"too large", big, CodeTooLarge},
		{"empty", ``, CodeBadMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.in), 0)
			assertCode(t, err, tt.code)
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		code Code
	}{
		{"join", `{"type":"join","id":"1","room":"lobby"}`, ""},
		{"leave", `{"type":"leave","room":"lobby"}`, ""},
		{"signal", `{"type":"signal","to":"p2","data":{"candidate":{"candidate":""}}}`, ""},
		{"signal in room", `{"type":"signal","to":"p2","room":"r","data":{}}`, ""},
		{"spoofed from", `{"type":"signal","to":"p2","from":"p3","data":{}}`, CodeBadMessage},
		{"client ref", `{"type":"ping","ref":"1"}`, CodeBadMessage},
		{"signal without to", `{"type":"signal","data":{}}`, CodeBadMessage},
		{"signal data not object", `{"type":"signal","to":"p2","data":"offer"}`, CodeBadMessage},
		{"signal without data", `{"type":"signal","to":"p2"}`, CodeBadMessage},
		{"join without room", `{"type":"join"}`, CodeBadMessage},
		{"join bad room", `{"type":"join","room":"a/../b"}`, CodeBadMessage},
		{"join room ..", `{"type":"join","room":".."}`, CodeBadMessage}, // a URL path cleans it away: never claimable
		{"join room .", `{"type":"join","room":"."}`, CodeBadMessage},
		{"join room .a.", `{"type":"join","room":".a."}`, ""},
		{"join long room", `{"type":"join","room":"` + strings.Repeat("r", 65) + `"}`, CodeBadMessage},
		{"join with empty data", `{"type":"join","room":"r","data":{}}`, ""},
		{"join with invite", `{"type":"join","room":"r","data":{"invite":"Qm9v-dH_N0"}}`, ""},
		{"join with unknown data", `{"type":"join","room":"r","data":{"invite":"a","x":1}}`, CodeBadMessage},
		{"join with bad invite", `{"type":"join","room":"r","data":{"invite":"a b"}}`, CodeBadMessage},
		{"join with long invite", `{"type":"join","room":"r","data":{"invite":"` + strings.Repeat("i", MaxInvite+1) + `"}}`, CodeBadMessage},
		{"join with invite not a string", `{"type":"join","room":"r","data":{"invite":7}}`, CodeBadMessage},
		{"join data not an object", `{"type":"join","room":"r","data":"invite"}`, CodeBadMessage},
		{"join with to", `{"type":"join","room":"r","to":"p2"}`, CodeBadMessage},
		{"leave with data", `{"type":"leave","room":"r","data":{"invite":"a"}}`, CodeBadMessage},
		{"long id", `{"type":"ping","id":"` + strings.Repeat("i", 65) + `"}`, CodeBadMessage},
		{"server type", `{"type":"welcome"}`, CodeUnknownType},
		{"unknown type", `{"type":"dance"}`, CodeUnknownType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode([]byte(tt.in), 0)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			assertCode(t, m.Validate(), tt.code)
		})
	}
}

func assertCode(t *testing.T, err error, want Code) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var pe *ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("error = %v, want a *ProtocolError with code %s", err, want)
	}
	if pe.Code != want {
		t.Fatalf("code = %s (%s), want %s", pe.Code, pe.Message, want)
	}
}

func TestNamesAndPasswords(t *testing.T) {
	for _, ok := range []string{"alice", "bob_2", "a.b-c", "x1y"} {
		if err := ValidUsername(ok); err != nil {
			t.Errorf("ValidUsername(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "ab", "Alice", "_alice", "al ice", "al\x00ice", "аlice" /* Cyrillic а */, strings.Repeat("a", 33), "../etc"} {
		if err := ValidUsername(bad); err == nil {
			t.Errorf("ValidUsername(%q) accepted", bad)
		}
	}
	if err := ValidPassword("short"); err == nil {
		t.Error("short password accepted")
	}
	if err := ValidPassword("ten chars!"); err != nil {
		t.Errorf("10-character password refused: %v", err)
	}
	if err := ValidPassword(strings.Repeat("p", MaxPassword+1)); err == nil {
		t.Error("huge password accepted")
	}
}

func TestPoliteIsAntisymmetric(t *testing.T) {
	a, b := "peerA", "peerB"
	if Polite(a, b) == Polite(b, a) {
		t.Fatal("both sides reach the same politeness")
	}
}

func TestRoundTrip(t *testing.T) {
	m := New(TypeJoined, Joined{Peers: []Member{{Peer: "p1", User: "alice", Role: RoleUser}}})
	m.Ref, m.Room = "1", "lobby"
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	var j Joined
	if err := got.DecodeData(&j); err != nil {
		t.Fatal(err)
	}
	if got.Ref != "1" || got.Room != "lobby" || len(j.Peers) != 1 || j.Peers[0].User != "alice" {
		t.Fatalf("round trip changed the message: %+v %+v", got, j)
	}
	e := NewError("4", CodeNotInRoom, "no room shared with %s", "p2")
	var ed Error
	if err := e.DecodeData(&ed); err != nil || ed.Code != CodeNotInRoom || e.Ref != "4" {
		t.Fatalf("NewError = %+v, %+v, %v", e, ed, err)
	}
}

func TestDecodeErrorNamesTheMessage(t *testing.T) {
	_, err := Decode([]byte(`{"type":"ping","id":"q7","v":9}`), 0)
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Code != CodeUnsupportedVersion || pe.ID != "q7" {
		t.Fatalf("err = %#v, want unsupported_version naming id q7", err)
	}
}

func TestJoinData(t *testing.T) {
	m, err := Decode([]byte(`{"type":"join","room":"r","data":{"invite":"tok-1"}}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	if j, err := m.JoinData(); err != nil || j.Invite != "tok-1" {
		t.Fatalf("JoinData = %+v, %v; want invite tok-1", j, err)
	}
	if j, err := (&Message{Type: TypeJoin, Room: "r"}).JoinData(); err != nil || j.Invite != "" {
		t.Fatalf("JoinData without data = %+v, %v; want the zero Join", j, err)
	}
}
