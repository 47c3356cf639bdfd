package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// Two nodes on one NATS server: peers on different nodes join a room, see
// each other join, relay signals both ways, and see each other in
// presence.
func TestRelayAcrossNodes(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{})
	alice := a.dial("user=alice&presence=1")
	bob := b.dial("user=bob&presence=1")
	alice.join("lobby")
	eventually(t, "node b to know alice's room", func() bool { return b.hub.RoomMembers("lobby") == 1 })
	peers := bob.join("lobby")
	if len(peers) != 1 || peers[0].Peer != alice.peer() {
		t.Fatalf("bob's joined %+v, want alice (on the other node)", peers)
	}
	alice.expectPeerJoined(bob.peer())
	alice.signal(bob.peer(), "s1", `{"offer":1}`)
	if m := bob.expectSignal(alice.peer()); string(m.Data) != `{"offer":1}` {
		t.Fatalf("bob got %s", m.Data)
	}
	bob.signal(alice.peer(), "s2", `{"answer":1}`)
	alice.expectSignal(bob.peer())
	// Presence reaches every node.
	eventually(t, "alice to see bob online", func() bool { return alice.sees(bob.peer()) })
	eventually(t, "bob to see alice online", func() bool { return bob.sees(alice.peer()) })
}

// Signals sent as fast as two clients can, both ways between two nodes,
// arrive intact and in order: deliveries are encoded into pooled buffers
// that the outbox gives back once NATS has its copy, and queued on the
// receiving node in pooled buffers too.
func TestSignalsArriveIntactAcrossNodes(t *testing.T) {
	const n = 300
	urls := natstest.Start(t).ClientURL()
	// Limits that let the signals through however slowly the test's
	// clients read on a loaded machine: the queue takes all of them.
	fast := hub.Config{MessageRate: 1e6, MessageBurst: 1e6, SignalBytesRate: 1 << 30, SignalBurstBytes: 1 << 30,
		SendQueue: 4 * n, SendQueueBytes: 16 << 20}
	a := startNode(t, "a", urls, fastConfig(), fast)
	b := startNode(t, "b", urls, fastConfig(), fast)
	alice := a.dial("user=alice")
	bob := b.dial("user=bob")
	alice.join("lobby")
	eventually(t, "node b to know alice's room", func() bool { return b.hub.RoomMembers("lobby") == 1 })
	bob.join("lobby")
	alice.expectPeerJoined(bob.peer())
	payload := func(from string, i int) string {
		k := fmt.Sprintf("%s-%d", from, i)
		return `{"k":"` + k + `","p":"` + strings.Repeat(k, 1+i%50) + `"}`
	}
	for i := range n {
		alice.signal(bob.peer(), fmt.Sprint("a", i), payload("alice", i))
		bob.signal(alice.peer(), fmt.Sprint("b", i), payload("bob", i))
	}
	for i := range n {
		if m := bob.expectSignal(alice.peer()); string(m.Data) != payload("alice", i) {
			t.Fatalf("bob's signal %d from alice: %s", i, m.Data)
		}
		if m := alice.expectSignal(bob.peer()); string(m.Data) != payload("bob", i) {
			t.Fatalf("alice's signal %d from bob: %s", i, m.Data)
		}
	}
}

// A client whose socket dropped resumes on another node: same peer id and
// rooms, the signal sent to it meanwhile arrives, and the others see no
// leave or join, nor the client offline in presence.
func TestResumeOnAnotherNode(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{ResumeWindow: time.Minute})
	c := startNode(t, "c", urls, fastConfig(), hub.Config{})
	alice, bob := inLobby(a, b)
	watcher := a.dial("user=watcher&presence=1")
	eventually(t, "the watcher to see bob online", func() bool { return watcher.sees(bob.peer()) })
	dropSocket(bob)
	eventually(t, "b to see bob's socket drop", func() bool { return b.hub.Stats().Connections == 0 })
	alice.signal(bob.peer(), "while-away", `{"n":1}`)
	alice.send(proto.Message{Type: proto.TypePing, ID: "p1"})
	alice.await(proto.TypePong, nil) // the signal reached b, and waits there

	back := c.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	if !back.welcome.Resumed || back.peer() != bob.peer() || len(back.welcome.Rooms) != 1 {
		t.Fatalf("welcome on c %+v, want bob's session resumed with its room", back.welcome)
	}
	if m := back.expectSignal(alice.peer()); string(m.Data) != `{"n":1}` {
		t.Fatalf("the waiting signal: %s", m.Data)
	}
	// Signals now go to c, both ways.
	alice.signal(bob.peer(), "after", `{"n":2}`)
	back.expectSignal(alice.peer())
	back.signal(alice.peer(), "back", `{"n":3}`)
	alice.expectSignal(bob.peer())
	// alice saw no peer-left: her next message answers her own ping.
	alice.send(proto.Message{Type: proto.TypePing, ID: "p2"})
	for m := alice.next(); m.Type != proto.TypePong; m = alice.next() {
		if m.Type == proto.TypePeerLeft || m.Type == proto.TypePeerJoined {
			t.Fatalf("alice saw %s across the resume", m.Type)
		}
	}
	if st := b.hub.Stats(); st.Sessions != 0 || st.Remote != 3 {
		t.Fatalf("node b after the move: %+v", st)
	}
	// Nor did presence show bob offline: every presence update up to one
	// that came after the resume (carol's arrival) keeps him online.
	carol := c.dial("user=carol")
	lists := func(p proto.Presence, peer string) bool {
		return slices.ContainsFunc(p.Peers, func(m proto.Member) bool { return m.Peer == peer })
	}
	watcher.await(proto.TypePresence, func(m *proto.Message) bool {
		var p proto.Presence
		if err := json.Unmarshal(m.Data, &p); err != nil {
			t.Fatal(err)
		}
		if p.Kind == proto.PresenceOffline && lists(p, bob.peer()) {
			t.Fatalf("the watcher saw bob offline across the resume: %s", m.Data)
		}
		return p.Kind != proto.PresenceOffline && lists(p, carol.peer())
	})
}

// Joins on different nodes at the same moment converge: whoever answered
// joined without the other hears peer-joined a moment later.
func TestConcurrentJoinsConverge(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	nodes := []*testNode{
		startNode(t, "a", urls, fastConfig(), hub.Config{}),
		startNode(t, "b", urls, fastConfig(), hub.Config{}),
		startNode(t, "c", urls, fastConfig(), hub.Config{}),
	}
	var clients []*client
	for i, n := range nodes {
		for j := range 3 {
			clients = append(clients, n.dial(fmt.Sprintf("user=u%d%d", i, j)))
		}
	}
	known := make([]map[string]bool, len(clients))
	done := make(chan int)
	for i, c := range clients {
		go func() {
			c.send(proto.Message{Type: proto.TypeJoin, ID: "j", Room: "busy"})
			done <- i
		}()
	}
	for range clients {
		<-done
	}
	for i, c := range clients {
		known[i] = map[string]bool{}
		for len(known[i]) < len(clients)-1 {
			m := c.next()
			switch m.Type {
			case proto.TypeJoined:
				var j proto.Joined
				_ = json.Unmarshal(m.Data, &j)
				for _, p := range j.Peers {
					known[i][p.Peer] = true
				}
			case proto.TypePeerJoined:
				var mem proto.Member
				_ = json.Unmarshal(m.Data, &mem)
				known[i][mem.Peer] = true
			}
		}
		if known[i][c.peer()] {
			t.Fatalf("%s was told it joined itself", c.welcome.User)
		}
	}
	for _, n := range nodes {
		if got := n.hub.RoomMembers("busy"); got != len(clients) {
			t.Errorf("node %s sees %d members in busy, want %d", n.name, got, len(clients))
		}
	}
}

// A node dies without a word: its clients that resume on another node
// within the grace keep their sessions (the others see no flicker); the
// session of one that does not come back is shown offline and leaves its
// rooms within 10 s; a signal that was on its way to the dead node is
// reported to its sender, not lost silently.
func TestNodeDeath(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{ResumeWindow: time.Minute})
	c := startNode(t, "c", urls, fastConfig(), hub.Config{})
	alice := a.dial("user=alice&presence=1")
	bob := b.dial("user=bob")     // will resume on c
	carol := b.dial("user=carol") // will not come back
	for _, cl := range []*client{alice, bob, carol} {
		cl.join("lobby")
	}
	eventually(t, "every node to know the room", func() bool {
		return a.hub.RoomMembers("lobby") == 3 && c.hub.RoomMembers("lobby") == 3
	})
	eventually(t, "alice to see carol online", func() bool { return alice.sees(carol.peer()) })

	b.kill()
	died := time.Now()
	// A signal sent into the gap, before b is found gone.
	alice.signal(carol.peer(), "into-the-gap", `{"n":1}`)
	back := c.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	if !back.welcome.Resumed || back.peer() != bob.peer() {
		t.Fatalf("bob's resume on c after b died: %+v", back.welcome)
	}
	// c's clean-up of b's sessions must not take bob, who is c's now
	// (it did: a flicker of bob for everyone, when c's directory still
	// had b's state of bob).
	if c.dirNode(bob.peer()) == "b" {
		t.Error("c's directory still counts bob, who resumed on c, among b's sessions")
	}
	m := alice.await(proto.TypeError, func(m *proto.Message) bool { return m.Ref == "into-the-gap" })
	var e proto.Error
	_ = json.Unmarshal(m.Data, &e)
	if e.Code != proto.CodePeerUnavailable {
		t.Fatalf("the signal into the gap: %s, want peer_unavailable", m.Data)
	}
	// Carol leaves the room and goes offline for everyone, in time; bob,
	// who came back, does not.
	left := alice.await(proto.TypePeerLeft, nil)
	var pl proto.PeerLeft
	_ = json.Unmarshal(left.Data, &pl)
	if pl.Peer != carol.peer() {
		t.Fatalf("peer-left %s, want carol (bob resumed)", left.Data)
	}
	eventually(t, "alice to see carol offline", func() bool { return !alice.sees(carol.peer()) })
	if took := time.Since(died); took > 10*time.Second {
		t.Errorf("carol shown offline %v after b died, want within 10 s", took)
	}
	if !alice.sees(bob.peer()) {
		t.Error("bob, who resumed, is shown offline")
	}
	alice.signal(bob.peer(), "to-bob", `{"n":2}`)
	back.expectSignal(alice.peer())
}

// SIGTERM on a node: it tells its clients to reconnect, they resume on the
// others, and nobody sees an error or a leave.
func TestDrainMovesClients(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{ResumeWindow: time.Minute})
	alice, bob := inLobby(a, b)

	drain, endDrain := context.WithTimeout(context.Background(), wait)
	defer endDrain()
	drained := drainAsync(b, drain)
	bob.await(proto.TypeReconnect, nil)
	start := time.Now()
	back := a.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	if !back.welcome.Resumed || back.peer() != bob.peer() {
		t.Fatalf("bob's resume after the drain notice: %+v", back.welcome)
	}
	<-drained
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the drain took %v after bob moved, want within 5 s", took)
	}
	alice.signal(bob.peer(), "after", `{"n":1}`)
	back.expectSignal(alice.peer())
	alice.send(proto.Message{Type: proto.TypePing, ID: "p"})
	for m := alice.next(); m.Type != proto.TypePong; m = alice.next() {
		if m.Type == proto.TypePeerLeft || m.Type == proto.TypeError {
			t.Fatalf("alice saw %s %s during the drain", m.Type, m.Data)
		}
	}
}

// Revoking a user ends its sessions on every node.
func TestRevocationReachesEveryNode(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{})
	mallory := b.dial("user=mallory")
	a.node.CloseUser("mallory", proto.CodeRevoked, "account disabled")
	m := mallory.await(proto.TypeError, nil)
	var e proto.Error
	_ = json.Unmarshal(m.Data, &e)
	if e.Code != proto.CodeRevoked || e.Message != "account disabled" {
		t.Fatalf("mallory on node b got %s", m.Data)
	}
	<-mallory.closed
	eventually(t, "node a to drop mallory's proxy", func() bool { return a.hub.Stats().Remote == 0 })
}
