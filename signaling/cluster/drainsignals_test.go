package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// TestSignalsDuringDrain: alice, on node a, signals bob and carol, both
// on node b, while b drains. Bob resumes on c; carol does not come back,
// and the drain's deadline, which comes once bob is on c, ends her
// session. Every signal reaches its peer (bob's on his old socket or on
// c) or is refused to alice: none is lost without a word.
func TestSignalsDuringDrain(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	cfg := Config{AckWait: 2 * time.Second} // default liveness: no node taken for gone on a loaded machine
	a := startNode(t, "a", urls, cfg, hub.Config{})
	b := startNode(t, "b", urls, cfg, hub.Config{ResumeWindow: time.Minute})
	c := startNode(t, "c", urls, cfg, hub.Config{})
	alice, bob := inLobby(a, b)
	carol := b.dial("user=carol")
	carol.join("lobby")
	alice.expectPeerJoined(carol.peer())

	const n = 40
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		tick := time.NewTicker(5 * time.Millisecond) // alice's pace, not a synchronisation
		defer tick.Stop()
		for i := range n {
			<-tick.C
			for _, to := range []*client{bob, carol} {
				b, _ := json.Marshal(proto.Message{Type: proto.TypeSignal, ID: fmt.Sprint(to.welcome.User, i), To: to.peer(),
					Data: json.RawMessage(fmt.Sprintf(`{"id":"%s%d"}`, to.welcome.User, i))})
				_ = alice.ws.WriteMessage(websocket.TextMessage, b)
			}
		}
	}()
	// The drain's deadline: once bob has resumed on c (a deadline of a
	// fixed time shared with the shutdown could come first on a loaded
	// machine, and end bob's session before his resume), or after wait.
	deadline, endDrain := context.WithTimeout(context.Background(), wait)
	defer endDrain()
	drained := drainAsync(b, deadline)

	reached := map[string]bool{} // by signal id
	take := func(m *proto.Message) {
		var d struct{ ID string }
		if m.Type == proto.TypeSignal && m.From == alice.peer() && json.Unmarshal(m.Data, &d) == nil {
			reached[d.ID] = true
		}
	}
	for m := bob.next(); m.Type != proto.TypeReconnect; m = bob.next() {
		take(m)
	}
	back := c.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	if !back.welcome.Resumed {
		t.Fatalf("bob's resume on c: %+v", back.welcome)
	}
	<-sent
	endDrain() // carol's session, left on b, ends
	<-drained

	refused := map[string]bool{}
	giveUp := time.Now().Add(wait)
	for {
		for _, cl := range []*client{back, carol} {
			for len(cl.msgs) > 0 {
				take(<-cl.msgs)
			}
		}
		var missing []string
		for i := range n {
			for _, user := range []string{"bob", "carol"} {
				if id := fmt.Sprint(user, i); !reached[id] && !refused[id] {
					missing = append(missing, id)
				}
			}
		}
		if len(missing) == 0 {
			t.Logf("%d signals reached their peers, %d were refused", len(reached), len(refused))
			return
		}
		if time.Now().After(giveUp) {
			t.Fatalf("neither delivered nor refused: %v", missing)
		}
		select {
		case m := <-alice.msgs:
			if m.Type == proto.TypeError {
				refused[m.Ref] = true
			}
		case <-time.After(50 * time.Millisecond): // then look at bob's and carol's again
		}
	}
}
