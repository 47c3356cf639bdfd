package cluster

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

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

	release := make(chan struct{})
	hold := func() { <-release }
	a.node.testHookFlush.Store(&hold)
	released := false
	let := func() {
		if !released {
			released = true
			close(release)
		}
	}
	t.Cleanup(let)

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
