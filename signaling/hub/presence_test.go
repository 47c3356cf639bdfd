package hub

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/url"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/proto"
)

// view applies presence messages as a client does.
type view struct {
	peers map[string]bool
	count int
}

func (v *view) apply(p proto.Presence) {
	switch p.Kind {
	case proto.PresenceFull:
		v.peers = map[string]bool{}
		fallthrough
	case proto.PresenceOnline:
		for _, m := range p.Peers {
			v.peers[m.Peer] = true
		}
	case proto.PresenceOffline:
		for _, m := range p.Peers {
			delete(v.peers, m.Peer)
		}
	}
	if p.Count != 0 || p.Kind == proto.PresenceFull {
		v.count = p.Count
	}
}

// drainPresence applies every presence message c has received so far.
func drainPresence(c *tclient, v *view) {
	for {
		select {
		case m := <-c.msgs:
			var p proto.Presence
			if m.Type == proto.TypePresence && json.Unmarshal(m.Data, &p) == nil {
				v.apply(p)
			}
		default:
			return
		}
	}
}

// Subscribers that arrive while sessions come and go, at any point between
// flushes, end with the same view as one that arrives when all is quiet.
func TestPresenceSubscribersAgree(t *testing.T) {
	ts := newTestServer(t, Config{PresenceInterval: 30 * time.Millisecond, MaxPresenceList: 3})
	rng := rand.New(rand.NewPCG(1, 2))
	var live []*tclient
	var subs []*tclient
	for i := range 60 {
		switch {
		case i%6 == 0:
			subs = append(subs, ts.dial(fmt.Sprint("user=sub", i, "&presence=1")))
		case len(live) > 0 && rng.IntN(3) == 0:
			j := rng.IntN(len(live))
			_ = live[j].ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
			live = append(live[:j], live[j+1:]...)
		default:
			live = append(live, ts.dial(fmt.Sprint("user=u", i)))
		}
	}
	online := len(live) + len(subs) + 1
	eventually(t, "the churn to settle", func() bool { return ts.hub.Stats().Sessions == online-1 })
	fresh := ts.dial("user=fresh&presence=1")
	views := make([]view, len(subs))
	var want view
	eventually(t, "every subscriber to see what a fresh one sees", func() bool {
		drainPresence(fresh, &want)
		agree := want.count == online && len(want.peers) == 3
		for i, s := range subs {
			drainPresence(s, &views[i])
			agree = agree && maps.Equal(views[i].peers, want.peers) && views[i].count == want.count
		}
		return agree
	})
}

// A connect/disconnect loop costs each subscriber at most two messages per
// interval, however fast it runs.
func TestPresenceLoopIsCoalesced(t *testing.T) {
	const interval = 100 * time.Millisecond
	ts := newTestServer(t, Config{PresenceInterval: interval})
	sub := ts.dial("user=sub&presence=1")
	nextPresence(t, sub)
	start := time.Now()
	for i := range 100 {
		c := ts.dial(fmt.Sprint("user=loop", i))
		_ = c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	}
	eventually(t, "the loop's sessions to end", func() bool { return ts.hub.Stats().Sessions == 1 })
	// One more session that stays: the flush that tells of it comes after
	// everything the loop caused.
	ts.dial("user=last")
	elapsed := time.Since(start)
	n := 0
	for {
		n++
		m := sub.next()
		var p proto.Presence
		if json.Unmarshal(m.Data, &p) == nil && p.Count == 2 {
			break
		}
	}
	flushes := int(elapsed/interval) + 2
	t.Logf("%d presence messages for 100 sessions in %v", n, elapsed.Round(time.Millisecond))
	if n > 2*flushes {
		t.Errorf("%d presence messages in %v: more than two per %v", n, elapsed, interval)
	}
}

// Rooms scope: one sees the peers in the rooms one shares, and hears of
// them as rooms are joined and left.
func TestPresenceRoomsScope(t *testing.T) { forModes(t, testPresenceRoomsScope) }

func testPresenceRoomsScope(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{PresenceScope: proto.ScopeRooms, PresenceInterval: 20 * time.Millisecond}, mode)
	alice := ts.dial("user=alice&presence=1")
	if p := nextPresence(t, alice); p.Kind != proto.PresenceFull || len(p.Peers) != 0 || p.Scope != proto.ScopeRooms {
		t.Fatalf("alice's first list %+v, want an empty rooms-scope list", p)
	}
	bob := ts.dial("user=bob&presence=1")
	nextPresence(t, bob)
	carol := ts.dial("user=carol")

	alice.join("r", "1")
	bob.join("r", "1")
	waitPresence(t, alice, proto.PresenceOnline, bob.peer())
	waitPresence(t, bob, proto.PresenceOnline, alice.peer())

	carol.join("r2", "1")
	carol.join("r3", "2")
	alice.join("r2", "2")
	waitPresence(t, alice, proto.PresenceOnline, carol.peer())
	alice.join("r3", "3")
	// Carol leaves one of the two rooms she shares with alice: alice still
	// sees her. Bob leaves the only one: alice no longer sees him.
	leave(t, carol, "r2")
	leave(t, bob, "r")
	p := waitPresence(t, alice, proto.PresenceOffline, bob.peer())
	for _, m := range p.Peers {
		if m.Peer == carol.peer() {
			t.Fatalf("alice told carol went offline, though they share r3: %+v", p)
		}
	}
	waitPresence(t, bob, proto.PresenceOffline, alice.peer())

	// A resumed connection gets the members of its rooms as its first list.
	drop(t, ts, alice)
	back := ts.dial("user=alice&presence=1&resume=" + url.QueryEscape(alice.welcome.ResumeToken))
	p = nextPresence(t, back)
	if p.Kind != proto.PresenceFull || len(p.Peers) != 1 || p.Peers[0].Peer != carol.peer() {
		t.Fatalf("resumed list %+v, want carol alone", p)
	}
}

// leave leaves room and waits for the ack, past room events.
func leave(t *testing.T, c *tclient, room string) {
	t.Helper()
	c.send(proto.Message{Type: proto.TypeLeave, ID: "leave-" + room, Room: room})
	for m := c.next(); m.Type != proto.TypeAck || m.Ref != "leave-"+room; m = c.next() {
		if m.Type == proto.TypeError {
			t.Fatalf("leave %s: %s", room, m.Data)
		}
	}
}
