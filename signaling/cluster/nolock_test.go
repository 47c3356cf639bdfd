package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/signaling/hub"
)

// TestBlockedPublishHoldsNoHubLock: Delivery does no socket I/O under a
// hub lock (issue 12). While node a's NATS connection takes nothing (its
// publish blocks, as on a socket whose buffer is full), a's clients keep
// going: alice, whose signals to bob on node b wait behind the blocked
// publish, gets her answers and joins another room; erin joins lobby,
// whose lock alice's signals and the room's events take, and alice hears
// of it; carol and dave, both on a, relay to each other; no handler on a
// is stuck. Once NATS takes again, bob gets every signal, in order.
func TestBlockedPublishHoldsNoHubLock(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{})
	alice, bob := inLobby(a, b)
	carol, dave := a.dial("user=carol"), a.dial("user=dave")
	carol.join("local")
	dave.join("local")
	carol.expectPeerJoined(dave.peer())

	held, let := holdOutbox(t, a, nil)
	alice.signal(bob.peer(), "s0", `{"n":0}`)
	select {
	case <-held:
	case <-time.After(wait):
		t.Fatal("the signal to bob was never published")
	}
	start := time.Now()
	const n = 20
	for i := 1; i < n; i++ {
		alice.signal(bob.peer(), fmt.Sprint("s", i), fmt.Sprintf(`{"n":%d}`, i))
	}
	alice.join("side")
	erin := a.dial("user=erin")
	erin.join("lobby")
	alice.expectPeerJoined(erin.peer())
	carol.signal(dave.peer(), "c", `{"hi":1}`)
	dave.expectSignal(carol.peer())
	if stuck := a.hub.Stuck(time.Now().Add(-time.Second)); len(stuck) > 0 {
		t.Errorf("handlers of %v stuck behind the blocked publish", stuck)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a's clients were served in %v while its publish was blocked, want at once", took)
	}

	let()
	for i := range n {
		if m := bob.expectSignal(alice.peer()); string(m.Data) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("bob got %s, want signal %d", m.Data, i)
		}
	}
}
