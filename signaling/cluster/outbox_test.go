package cluster

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// TestOutboxBoundedInBytes: while a node's NATS connection takes nothing
// (held here before the outbox publishes), one user's signals near the
// size limit to a peer on another node fill the outbox up to its bytes,
// not its 65536 messages (4 GiB of them); past that the sender is told
// each signal was not delivered, and once NATS takes again, everything
// not refused arrives in order and another user's signals go through.
func TestOutboxBoundedInBytes(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	cfg := fastConfig()
	cfg.OutboxBytes = 1 << 20
	a := startNode(t, "a", urls, cfg, hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{})
	alice, bob := inLobby(a, b)
	carol, dave := inLobby(a, b)

	let := holdOutbox(t, a)

	const n, size = 30, 50 << 10 // 1.5 MB: within the sender's own limits
	pad := strings.Repeat("x", size)
	for i := range n {
		alice.signal(bob.peer(), fmt.Sprintf("s%d", i), fmt.Sprintf(`{"n":%d,"pad":%q}`, i, pad))
	}
	alice.send(proto.Message{Type: proto.TypePing, ID: "p"})
	refused := map[string]bool{}
	for m := alice.next(); m.Type != proto.TypePong; m = alice.next() {
		var e proto.Error
		if m.Type == proto.TypeError && json.Unmarshal(m.Data, &e) == nil && e.Code == proto.CodePeerUnavailable {
			refused[m.Ref] = true
		}
	}
	if q := outboxBytes(a); q > cfg.OutboxBytes {
		t.Errorf("the outbox holds %d bytes, over its %d", q, cfg.OutboxBytes)
	}
	if len(refused) == 0 {
		t.Fatalf("all %d signals (%d KiB) waited in an outbox of %d KiB", n, n*size>>10, cfg.OutboxBytes>>10)
	}

	let()
	carol.signal(dave.peer(), "c1", `{"hi":1}`)
	dave.expectSignal(carol.peer())
	for i := range n {
		if refused[fmt.Sprintf("s%d", i)] {
			continue
		}
		m := bob.expectSignal(alice.peer())
		if want := fmt.Sprintf(`{"n":%d,`, i); !strings.HasPrefix(string(m.Data), want) {
			t.Fatalf("got %.20s, want signal %d", m.Data, i)
		}
	}
}

// TestOutboxFullOfSignalsKeepsSessionStates: while a node's NATS
// connection takes nothing, one user's signals fill its outbox (here 20
// messages). A session that then starts, joins a room and ends there
// still has its states and its end queued for the other nodes, which see
// it come and go once NATS takes again. They were refused as the signals
// were, and the direct way is what carries a session's end: from the
// directory alone, the end of a session whose last state came directly
// is taken for the removal of an older entry, and the session may stay
// online elsewhere (docs/cluster.md, "Why a session's state goes two
// ways").
func TestOutboxFullOfSignalsKeepsSessionStates(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	cfg := fastConfig()
	cfg.Outbox = 20
	a := startNode(t, "a", urls, cfg, hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{})
	alice, bob := inLobby(a, b)
	let := holdOutbox(t, a)

	for i := range 2 * cfg.Outbox {
		alice.signal(bob.peer(), fmt.Sprint("s", i), `{"n":1}`)
	}
	alice.await(proto.TypeError, func(m *proto.Message) bool { return m.Ref == fmt.Sprint("s", 2*cfg.Outbox-1) })
	carol := a.dial("user=carol")
	carol.join("lobby")
	_ = carol.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(wait))
	eventually(t, "carol's session to end on a", func() bool { return a.hub.RoomMembers("lobby") == 2 })
	if !queuedFor(a, "b", carol.peer(), `"gone":true`) {
		t.Fatal("carol's end is not queued for node b")
	}
	let()
	eventually(t, "b to see carol come and go", func() bool {
		return b.dirNode(carol.peer()) == "a" && !b.hub.IsLocal(carol.peer()) && b.hub.RoomMembers("lobby") == 2 && tombstone(b, carol.peer())
	})
}

// tombstone reports whether tn's directory has peer as ended.
func tombstone(tn *testNode, peer string) bool {
	tn.node.dir.imu.Lock()
	defer tn.node.dir.imu.Unlock()
	e := tn.node.dir.byPeer[peer]
	return e != nil && e.gone
}

// holdOutbox stops tn's outbox from publishing, as a NATS connection that
// takes nothing would, until the returned function (or the test's end)
// lets it go on.
func holdOutbox(t *testing.T, tn *testNode) (let func()) {
	release := make(chan struct{})
	hold := func() { <-release }
	tn.node.testHookFlush.Store(&hold)
	var once sync.Once
	let = func() { once.Do(func() { close(release) }) }
	t.Cleanup(let)
	return let
}

// queuedFor reports whether tn's outbox holds a state of peer for node
// that contains text.
func queuedFor(tn *testNode, node, peer, text string) bool {
	o := tn.node.out
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range o.msgs {
		if m.subject == tn.node.subject("node", node) && len(m.data) > 0 && m.data[0] == opState &&
			strings.Contains(string(m.data), peer) && strings.Contains(string(m.data), text) {
			return true
		}
	}
	return false
}

// outboxBytes is how many bytes of messages wait in tn's outbox.
func outboxBytes(tn *testNode) int {
	o := tn.node.out
	o.mu.Lock()
	defer o.mu.Unlock()
	k := 0
	for _, m := range o.msgs {
		k += len(m.data)
	}
	return k
}
