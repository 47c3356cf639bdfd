package hub

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/proto"
)

// stuckBob is a client "bob" in room lobby with alice, whose reader is
// stopped and whose server-side queue is full and not draining.
type stuckBob struct {
	bob     *tclient
	welcome proto.Welcome
	lastID  string // the last signal accepted: it waits in bob's queue
}

func (sb *stuckBob) read(t *testing.T) (*proto.Message, error) {
	_ = sb.bob.ws.SetReadDeadline(time.Now().Add(wait))
	_, b, err := sb.bob.ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	var m proto.Message
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return &m, nil
}

func (sb *stuckBob) readUntil(t *testing.T, typ string) *proto.Message {
	for {
		m, err := sb.read(t)
		if err != nil {
			t.Fatalf("bob read: %v", err)
		}
		if m.Type == typ {
			return m
		}
	}
}

// newStuckBob dials bob (with query extra), joins him to lobby, stops
// reading, and has alice signal him in rounds until a whole round is
// refused: bob's socket is full, the writer is stuck on it, and the queue
// is at its limit, so the last signal accepted is in the queue.
func newStuckBob(t *testing.T, ts *testServer, alice *tclient, extra string) *stuckBob {
	sb := &stuckBob{bob: ts.dialRaw("user=bob&sndbuf=1"+extra, true)}
	if err := json.Unmarshal(sb.readUntil(t, proto.TypeWelcome).Data, &sb.welcome); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(proto.Message{Type: proto.TypeJoin, ID: "j", Room: "lobby"})
	if err := sb.bob.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatal(err)
	}
	sb.readUntil(t, proto.TypeJoined)
	alice.expect(proto.TypePeerJoined)

	// A first signal far larger than the socket buffers keeps the writer
	// in one write, so that what queues behind it stays in the queue.
	alice.signal(sb.welcome.Peer, "lobby", "big", `{"i":"big","sdp":"`+strings.Repeat("x", 60000)+`"}`)
	pad := strings.Repeat("x", 1000)
	last, next := -1, 0
	for round := 0; ; round++ {
		if round == 15 {
			t.Fatal("bob's queue never stayed full")
		}
		const per = 20
		for i := next; i < next+per; i++ {
			alice.signal(sb.welcome.Peer, "lobby", fmt.Sprint(i), fmt.Sprintf(`{"i":"%d","sdp":"%s"}`, i, pad))
		}
		alice.send(proto.Message{Type: proto.TypePing, ID: fmt.Sprint("p", round)})
		refused := map[string]bool{}
		for m := alice.next(); m.Type != proto.TypePong; m = alice.next() {
			if m.Type == proto.TypeError {
				refused[m.Ref] = true
			}
		}
		for i := next; i < next+per; i++ {
			if !refused[fmt.Sprint(i)] {
				last = i
			}
		}
		next += per
		if len(refused) == per && last >= 0 {
			break // a whole round refused: the queue is full and not moving
		}
	}
	sb.lastID = fmt.Sprint(last)
	t.Logf("bob's queue is stuck; the last signal accepted is %s", sb.lastID)
	return sb
}

func signalID(m *proto.Message) string {
	var d struct{ I string }
	_ = json.Unmarshal(m.Data, &d)
	return d.I
}
