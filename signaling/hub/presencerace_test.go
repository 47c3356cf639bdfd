package hub

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/khadga/khadga/proto"
)

// Rooms scope: two peers that each join a room the other is in, at the
// same time, see each other. Each join looked for another shared room in
// the other's memberships, which the other join had already changed:
// both found one, and neither told of the other.
func TestRoomsPresenceConcurrentJoins(t *testing.T) {
	ts := newTestServer(t, Config{PresenceScope: proto.ScopeRooms, PresenceInterval: 10 * time.Millisecond})
	alice := ts.dial("user=alice&presence=1")
	bob := ts.dial("user=bob&presence=1")
	alice.join("x", "1")
	bob.join("y", "1")

	// While alice joins y, bob joins x.
	bobJoined := make(chan error, 1)
	var early []*proto.Message // bob's, before his joined
	var hook func(room, peer string)
	hook = func(room, peer string) {
		if room != "y" || peer != alice.peer() {
			return
		}
		ts.hub.testHookAddingMember.Store(nil)
		bob.send(proto.Message{Type: proto.TypeJoin, ID: "2", Room: "x"})
		timeout := time.After(wait)
		for {
			select {
			case m := <-bob.msgs:
				if m.Type == proto.TypeJoined && m.Ref == "2" {
					bobJoined <- nil
					return
				}
				early = append(early, m)
			case <-timeout:
				bobJoined <- errors.New("bob's join of x was not answered while alice joined y")
				return
			}
		}
	}
	ts.hub.testHookAddingMember.Store(&hook)
	t.Cleanup(func() { ts.hub.testHookAddingMember.Store(nil) })
	alice.join("y", "2")
	if err := <-bobJoined; err != nil {
		t.Fatal(err)
	}

	// carol comes last: whoever saw her has heard all that came before.
	carol := ts.dial("user=carol")
	carol.join("x", "1")
	for _, c := range []struct {
		who  *tclient
		sees *tclient
	}{{alice, bob}, {bob, alice}} {
		v := view{peers: map[string]bool{}} // both started empty
		if c.who == bob {
			for _, m := range early {
				applyPresence(&v, m)
			}
		}
		for !v.peers[carol.peer()] {
			applyPresence(&v, c.who.next())
		}
		if !v.peers[c.sees.peer()] {
			t.Errorf("%s does not see %s, though they share rooms x and y: %v", c.who.welcome.User, c.sees.welcome.User, v.peers)
		}
	}
}

// applyPresence applies m to v if it is presence.
func applyPresence(v *view, m *proto.Message) {
	var p proto.Presence
	if m.Type == proto.TypePresence && json.Unmarshal(m.Data, &p) == nil {
		v.apply(p)
	}
}
