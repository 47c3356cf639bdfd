package hub

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/khadga/khadga/proto"
)

// TestForwardPathAllocs checks what the hub itself allocates to route a
// signal once it is decoded: the room check, the directory lookup and the
// re-encoding with from stamped (into a reused buffer, as forward does with
// signalPool) allocate nothing.
func TestForwardPathAllocs(t *testing.T) {
	h, err := New(Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Shutdown(t.Context())
	r := newRoom("r")
	a := &session{h: h, member: proto.Member{Peer: "a1"}, rooms: map[string]*room{"r": r}}
	b := &session{h: h, member: proto.Member{Peer: "b1"}, rooms: map[string]*room{"r": r}}
	r.set(func(m map[string]*session) { m["a1"], m["b1"] = a, b })
	h.sessions.putIfAbsent("a1", a)
	h.sessions.putIfAbsent("b1", b)
	data := json.RawMessage(`{"candidate":{"candidate":"` + strings.Repeat("a", 1000) + `"}}`)

	var out []byte
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok := h.sessions.get("b1"); !ok || !h.shareRoom(a, "b1", "") || !h.shareRoom(a, "b1", "r") {
			t.Fatal("a and b share room r")
		}
		out = appendSignal(out[:0], "r", a.member.Peer, data)
	})
	if allocs > 0 {
		t.Fatalf("forward path allocates %v times per signal, want 0", allocs)
	}
	m, err := proto.Decode(out, 0)
	if err != nil || m.From != "a1" || m.Room != "r" || string(m.Data) != string(data) || m.Type != proto.TypeSignal {
		t.Fatalf("encoded signal %s: %v", out, err)
	}
}

// BenchmarkDecodeSignal measures proto.Decode and Validate on a 1 KiB
// signal: the one decode each relayed message costs.
func BenchmarkDecodeSignal(b *testing.B) {
	msg := []byte(`{"type":"signal","id":"17","to":"Xk3aaaaaaaaaaaaa","data":{"candidate":{"candidate":"` + strings.Repeat("a", 1000) + `"}}}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		m, err := proto.Decode(msg, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeSignal(b *testing.B) {
	data := json.RawMessage(`{"candidate":{"candidate":"` + strings.Repeat("a", 1000) + `"}}`)
	b.ReportAllocs()
	var out []byte
	for b.Loop() {
		out = appendSignal(out[:0], "room", "Xk3aaaaaaaaaaaaa", data)
	}
}
