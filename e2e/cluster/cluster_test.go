// Package cluster_test runs khadga as a cluster, whole: three NATS servers
// in a routed cluster with JetStream, three khadga servers (package
// signaling, each a node with package cluster), and real Go client peers
// (package client) with pion PeerConnections, all in this process, on
// 127.0.0.1. The accounts live in one store the three servers share here;
// in production each node reaches the same accounts in JetStream KV.
package cluster_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/internal/stacks"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/cluster"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/khadga/khadga/signaling/store"
)

const (
	timeout  = 60 * time.Second
	password = "correct horse battery"
)

// Compile-time: the cluster Node is what a signaling server needs of one.
var _ signaling.Cluster = (*cluster.Node)(nil)

// startCluster starts n khadga nodes on a 3-server NATS cluster.
func startCluster(t *testing.T, n int) (*natstest.Cluster, []*signalingtest.Server) {
	t.Helper()
	nats := natstest.StartCluster(t, 3)
	st, err := store.Open(t.TempDir()+"/khadga.db", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var nodes []*signalingtest.Server
	for i := range n {
		nodes = append(nodes, signalingtest.Start(t, signalingtest.Options{
			NATS: nats.URLs(), Store: st,
			// Production timings: a node is gone after 3 s without a
			// heartbeat (a NATS server failover takes less), and its
			// sessions wait 5 s more for their clients.
			Cluster: cluster.Config{NodeID: string(rune('a' + i)), Replicas: 3,
				Heartbeat: time.Second, DeadAfter: 3 * time.Second, OrphanGrace: 5 * time.Second},
			Config: signaling.Config{ResumeWindow: 30 * time.Second},
		}))
	}
	return nats, nodes
}

func loopback() webrtc.SettingEngine {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	return se
}

func dial(t *testing.T, s *signalingtest.Server, user string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := client.Dial(ctx, s.URL, client.Credentials{Username: user, Password: password},
		client.WithSettingEngine(loopback()), client.WithReconnectBackoff(50*time.Millisecond, time.Second),
		client.WithEventBuffer(1<<14)) // the tests read the events they wait for and leave the rest
	if err != nil {
		t.Fatalf("%s dials %s: %v", user, s.URL, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func join(t *testing.T, c *client.Client, room string) *client.Room {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r, err := c.Join(ctx, room)
	if err != nil {
		t.Fatalf("join %s: %v", room, err)
	}
	return r
}

// wait returns the first event of type T on ch that ok accepts.
func wait[T client.Event](t *testing.T, ch <-chan client.Event, ok func(T) bool) T {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case ev := <-ch:
			if e, is := ev.(T); is && (ok == nil || ok(e)) {
				return e
			}
		case <-timer.C:
			var zero T
			t.Fatalf("timed out waiting for %T\n%s", zero, stacks.Summary())
			return zero
		}
	}
}

// A Go client on node a and one on node c join a room, connect peer to
// peer (their handshake crossing nodes through NATS) and chat both ways;
// a third client on node b sees both in presence. Room events reach every
// node: when carol on b joins, she finds alice and bob in the room and
// both hear that she joined; when bob on c leaves, alice and carol hear
// it.
func TestChatAcrossNodes(t *testing.T) {
	_, nodes := startCluster(t, 3)
	for _, u := range []string{"alice", "bob", "carol"} {
		nodes[0].Register(t, u, password)
	}
	alice, bob, carol := dial(t, nodes[0], "alice"), dial(t, nodes[2], "bob"), dial(t, nodes[1], "carol")
	ra, rb := join(t, alice, "lobby"), join(t, bob, "lobby")
	wait[*client.PeerConnected](t, ra.Events(), func(e *client.PeerConnected) bool { return e.Member.User == "bob" })
	wait[*client.PeerConnected](t, rb.Events(), func(e *client.PeerConnected) bool { return e.Member.User == "alice" })
	if n, err := ra.Send("hello from node a"); err != nil || n != 1 {
		t.Fatalf("alice send: %d %v", n, err)
	}
	if m := wait[*client.Message](t, rb.Events(), nil); m.Text != "hello from node a" || m.From.User != "alice" {
		t.Fatalf("bob got %+v", m)
	}
	if _, err := rb.Send("hello from node c"); err != nil {
		t.Fatal(err)
	}
	wait[*client.Message](t, ra.Events(), func(m *client.Message) bool { return m.Text == "hello from node c" })
	// Presence reaches node b.
	deadline := time.Now().Add(timeout)
	for !(sees(carol, "alice") && sees(carol, "bob")) {
		if time.Now().After(deadline) {
			t.Fatalf("carol on node b does not see alice and bob online: %v", carol.Online())
		}
		time.Sleep(10 * time.Millisecond) // polling the client's presence view
	}
	rc := join(t, carol, "lobby")
	if got := len(rc.MembersByUser("alice")) + len(rc.MembersByUser("bob")); got != 2 {
		t.Fatalf("carol on node b joined lobby with members %v, want alice and bob", rc.Members())
	}
	joined := func(e *client.MemberJoined) bool { return e.Member.User == "carol" }
	wait[*client.MemberJoined](t, ra.Events(), joined)
	wait[*client.MemberJoined](t, rb.Events(), joined)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := rb.Leave(ctx); err != nil {
		t.Fatalf("bob leaves: %v", err)
	}
	left := func(e *client.MemberLeft) bool { return e.Member.User == "bob" }
	wait[*client.MemberLeft](t, ra.Events(), left)
	wait[*client.MemberLeft](t, rc.Events(), left)
}

func sees(c *client.Client, user string) bool {
	for _, m := range c.Online() {
		if m.User == user {
			return true
		}
	}
	return false
}

// connectedAll waits until r is connected peer to peer with every user.
func connectedAll(t *testing.T, r *client.Room, me string, users []string) {
	t.Helper()
	got := map[string]bool{me: true}
	for len(got) < len(users) {
		e := wait[*client.PeerConnected](t, r.Events(), nil)
		got[e.Member.User] = true
	}
}

// lobbyOfThree starts a cluster of three nodes behind a balancer that
// spreads connections over them, registers users, and has each dial
// through the balancer and join "lobby".
func lobbyOfThree(t *testing.T, users []string) ([]*signalingtest.Server, []*client.Client, []*client.Room) {
	t.Helper()
	_, nodes := startCluster(t, 3)
	lb := newBalancer(t, nodes[0].URL, nodes[1].URL, nodes[2].URL)
	for _, u := range users {
		nodes[0].Register(t, u, password)
	}
	lbServer := &signalingtest.Server{URL: lb.URL()}
	var cs []*client.Client
	var rooms []*client.Room
	for _, u := range users {
		c := dial(t, lbServer, u)
		cs = append(cs, c)
		rooms = append(rooms, join(t, c, "lobby"))
	}
	return nodes, cs, rooms
}

// heldBy returns the indexes of the clients whose sessions node n holds.
func heldBy(t *testing.T, nodes []*signalingtest.Server, cs []*client.Client, n int) []int {
	t.Helper()
	var held []int
	for i, c := range cs {
		if placed(t, nodes, c) == n {
			held = append(held, i)
		}
	}
	return held
}

// placed finds the node that holds a client's session.
func placed(t *testing.T, nodes []*signalingtest.Server, c *client.Client) int {
	t.Helper()
	for i, n := range nodes {
		if n.Hub().IsLocal(c.Self().Peer) {
			return i
		}
	}
	t.Fatalf("no node holds %s", c.Self().User)
	return -1
}

// A node dies hard. Its clients, reconnecting through the load balancer,
// resume on the other nodes within 5 s and chat on; a session whose client
// does not come back is shown offline to everyone within 10 s.
func TestNodeFailure(t *testing.T) {
	users := []string{"alice", "bob", "carol", "dave", "erin", "frank"}
	nodes, cs, rooms := lobbyOfThree(t, users)
	connectedAll(t, rooms[0], "alice", users)
	alice := 0
	victim := -1
	for i := 1; i < len(cs) && victim < 0; i++ {
		if n := placed(t, nodes, cs[i]); n != placed(t, nodes, cs[alice]) {
			victim = n
		}
	}
	moving := heldBy(t, nodes, cs, victim)
	// One more session on the victim, of a client that will not come back.
	ghost := nodes[victim].User(t, "ghost")
	gc := nodes[victim].Connect(t, ghost.AccessToken, nil)
	gc.Join("lobby")
	waitMember := func(peer string) {
		wait[*client.MemberJoined](t, rooms[alice].Events(), func(e *client.MemberJoined) bool { return e.Member.Peer == peer })
	}
	waitMember(gc.Welcome.Peer)

	nodes[victim].Kill()
	died := time.Now()
	for _, i := range moving {
		ev := wait[*client.Reconnected](t, cs[i].Events(), nil)
		if !ev.Resumed || ev.Peer != cs[i].Self().Peer {
			t.Fatalf("%s reconnected without its session: %+v", users[i], ev)
		}
		if took := time.Since(died); took > 5*time.Second {
			t.Errorf("%s resumed %v after the node died, want within 5 s", users[i], took)
		}
		if n := placed(t, nodes, cs[i]); n == victim {
			t.Fatalf("%s is still on the dead node", users[i])
		}
	}
	// The ghost leaves the room for everyone, in time.
	wait[*client.MemberLeft](t, rooms[alice].Events(), func(e *client.MemberLeft) bool { return e.Member.Peer == gc.Welcome.Peer })
	if took := time.Since(died); took > 10*time.Second {
		t.Errorf("the ghost left the room %v after its node died, want within 10 s", took)
	}
	// The chat goes on with those who moved.
	for _, i := range moving {
		text := "still here, " + users[i]
		if n, err := rooms[alice].Send(text); err != nil || n != len(users)-1 {
			t.Fatalf("alice's message reached %d peers (%v), want %d; her connections: %s", n, err, len(users)-1, peerStates(rooms[alice]))
		}
		wait[*client.Message](t, rooms[i].Events(), func(m *client.Message) bool { return m.Text == text })
	}
}

// peerStates describes r's members and the state of the connection to
// each, for a failure message.
func peerStates(r *client.Room) string {
	var b strings.Builder
	for _, m := range r.Members() {
		info, ok := r.PeerInfo(m.Peer)
		fmt.Fprintf(&b, "%s/%s: %v (peer %v, ICE %v); ", m.User, m.Peer, ok, info.State, info.ICEState)
	}
	return b.String()
}

// SIGTERM on a node (a graceful stop): it stops taking connections, tells
// its clients to reconnect, and they resume on the others within 5 s; the
// chat goes on and nobody gets an error.
func TestDrain(t *testing.T) {
	users := []string{"alice", "bob", "carol", "dave"}
	nodes, cs, rooms := lobbyOfThree(t, users)
	for i, r := range rooms {
		connectedAll(t, r, users[i], users)
	}
	victim := placed(t, nodes, cs[1])
	moving := heldBy(t, nodes, cs, victim)
	start := time.Now()
	go nodes[victim].Stop()
	for _, i := range moving {
		ev := wait[*client.Reconnected](t, cs[i].Events(), nil)
		if !ev.Resumed {
			t.Fatalf("%s reconnected without its session", users[i])
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s moved %v after SIGTERM, want within 5 s", users[i], took)
		}
	}
	sender := 0
	if placed(t, nodes, cs[0]) == victim {
		sender = moving[len(moving)-1] // all moved by now, any will do
	}
	for i := range cs {
		if i == sender {
			continue
		}
		text := "after the drain, " + users[i]
		if n, err := rooms[sender].Send(text); err != nil || n != len(users)-1 {
			t.Fatalf("send reached %d peers (%v)", n, err)
		}
		wait[*client.Message](t, rooms[i].Events(), func(m *client.Message) bool { return m.Text == text })
	}
	for i, c := range cs {
		for len(c.Events()) > 0 {
			if e, ok := (<-c.Events()).(*client.Disconnected); ok && e.Err != nil && !isReconnect(e.Err) {
				t.Errorf("%s was shown an error: %v", users[i], e.Err)
			}
		}
	}
}

// isReconnect reports whether err is the server asking to reconnect.
func isReconnect(err error) bool {
	return strings.Contains(err.Error(), "1012") || strings.Contains(err.Error(), "reconnect") ||
		strings.Contains(err.Error(), "restart")
}

// ready asks a node's /readyz.
func ready(t *testing.T, s *signalingtest.Server) int {
	t.Helper()
	resp, err := s.Client.Get(s.URL + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// NATS loses servers: with one of three down the cluster carries on; with
// two down JetStream has no quorum, and every node says it is not ready;
// when they come back, so does the cluster.
func TestNATSServersFail(t *testing.T) {
	nats, nodes := startCluster(t, 2)
	nodes[0].Register(t, "alice", password)
	nodes[0].Register(t, "bob", password)
	alice, bob := dial(t, nodes[0], "alice"), dial(t, nodes[1], "bob")
	ra, rb := join(t, alice, "lobby"), join(t, bob, "lobby")
	wait[*client.PeerConnected](t, ra.Events(), nil)
	wait[*client.PeerConnected](t, rb.Events(), nil)

	nats.Stop(2)
	for _, n := range nodes {
		if code := ready(t, n); code != 200 {
			t.Fatalf("with one NATS server of three down, /readyz %d, want 200", code)
		}
	}
	carol := dial(t, nodes[1], "alice") // a new connection still works across nodes
	rc := join(t, carol, "side")
	ra2 := join(t, alice, "side")
	wait[*client.PeerConnected](t, ra2.Events(), nil)
	wait[*client.PeerConnected](t, rc.Events(), nil)

	nats.Stop(1)
	deadline := time.Now().Add(timeout)
	for ready(t, nodes[0]) == 200 || ready(t, nodes[1]) == 200 {
		if time.Now().After(deadline) {
			t.Fatal("with two NATS servers of three down, the nodes still say they are ready")
		}
		time.Sleep(100 * time.Millisecond) // polling /readyz, as a load balancer does
	}
	nats.Restart(1)
	nats.Restart(2)
	deadline = time.Now().Add(timeout)
	for ready(t, nodes[0]) != 200 || ready(t, nodes[1]) != 200 {
		if time.Now().After(deadline) {
			t.Fatal("the nodes did not become ready again when NATS came back")
		}
		time.Sleep(100 * time.Millisecond) // polling /readyz
	}
}
