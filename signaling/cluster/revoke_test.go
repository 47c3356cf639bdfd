package cluster

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// revocationsSeen sends on the returned channel the user of each
// revocation or move tn takes from the revocation stream, as its handler
// starts. The stream's copies come one at a time, in the stream's order,
// and each is handled, or found handled already (it came over NATS core
// first), before the next starts: the handler of one starting means every
// one before it in the stream is done.
func revocationsSeen(t *testing.T, tn *testNode) <-chan string {
	seen := make(chan string, 64)
	hook := func(m *nats.Msg) {
		if u, ok := revocationUser(tn, m); ok && fromStream(m) {
			seen <- u
		}
	}
	tn.node.testHookHandle.Store(&hook)
	t.Cleanup(func() { tn.node.testHookHandle.Store(nil) })
	return seen
}

// revocationUser is the user of m if m is a revocation or a move.
func revocationUser(tn *testNode, m *nats.Msg) (string, bool) {
	if m.Subject != tn.node.subject("revoke") && m.Subject != tn.node.subject("relogin") {
		return "", false
	}
	var r revocation
	_ = json.Unmarshal(m.Data, &r)
	return r.User, true
}

// fromStream reports whether m is the revocation stream's copy: its reply
// subject is JetStream's metadata. What comes over NATS core has none.
func fromStream(m *nats.Msg) bool { return strings.HasPrefix(m.Reply, "$JS.ACK.") }

// awaitUser reads seen until user comes. It may run on any goroutine.
func awaitUser(t *testing.T, seen <-chan string, user string) {
	t.Helper()
	for {
		select {
		case u := <-seen:
			if u == user {
				return
			}
		case <-time.After(wait):
			t.Errorf("node never handled a revocation or move for %s", user)
			return
		}
	}
}

// expectRevoked checks that c's session was ended: a ping sent now is
// answered, if at all, only after the revocation's error.
func expectRevoked(t *testing.T, c *client, what string) {
	t.Helper()
	b, _ := json.Marshal(proto.Message{Type: proto.TypePing, ID: "alive?"})
	_ = c.ws.WriteMessage(websocket.TextMessage, b) // may fail: closed
	m := c.expect(proto.TypeError)
	var e proto.Error
	if err := json.Unmarshal(m.Data, &e); err != nil || e.Code != proto.CodeRevoked {
		t.Fatalf("%s: got error %s, want revoked", what, m.Data)
	}
}

// TestSignOutBeforeTheMoveReachesTheNode: a password change moves its
// sign-in's sessions to a new sign-in (MoveLogin, on the relogin
// subject), and signing out of the new sign-in ends them (CloseLogin, on
// the revoke subject). A node may hear the two in the other order: the
// move may still wait in the outbox of the node that served the password
// change when the sign-out, served by another node right after, goes out
// (and, before the revocation stream, a node handled the two subjects on
// different goroutines). Then the sign-out found nothing of the new
// sign-in, and the move that came after gave bob's session the sign-in
// just signed out of: it lived on for as long as its socket stayed open.
func TestSignOutBeforeTheMoveReachesTheNode(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{})
	c := startNode(t, "c", urls, fastConfig(), hub.Config{})
	bob := b.dial("user=bob&login=L1")
	seen := revocationsSeen(t, b)

	if n := c.node.CloseLogin("bob", "L2", proto.CodeRevoked, "signed out"); n != 0 { // served by c
		t.Fatalf("c ended %d sessions; bob's is b's", n)
	}
	awaitUser(t, seen, "bob")                             // b has the sign-out: nothing of L2's
	if n := a.node.MoveLogin("bob", "L1", "L2"); n != 0 { // the password change, served by a, late
		t.Fatalf("a moved %d sessions; bob's is b's", n)
	}
	a.node.CloseUser("zed", proto.CodeRevoked, "marker")
	awaitUser(t, seen, "zed") // b has handled bob's move
	expectRevoked(t, bob, "bob's socket after signing out of the sign-in it moved to")
}

// TestRevocationRacingAClaim: bob's session is on node a, and his client
// resumes on node b while a revocation of bob is served by a. Whatever
// the order, bob's session ends: on b when it is claimed, or on a with
// the claim refused (the client then gets a new session on b, which ends
// too); and neither bob's old resume token nor the one b gave works
// afterwards.
//
//   - "released first": a lets bob go (Release) before its Revoke looks,
//     which skips him as b's; b handles the revocation before the claim
//     has put bob in place there, and skips him too. b's memory of the
//     revocation ends him as the claim's connection attaches (it was
//     checked before the revocation). This is the order suspected of
//     letting him escape on both nodes.
//   - "revoked first": a's Revoke ends bob while b's claim is on its way
//     to a; a refuses it.
//   - "old node taken for gone": a does not answer the claim in time, and
//     b takes bob from the directory while a still holds him; the
//     revocation then ends him on both.
//   - "revoked as the old node is taken for gone": the same, with the
//     revocation between b's giving up on a and bob's being in place on
//     b (a ends its bob; b remembers).
func TestRevocationRacingAClaim(t *testing.T) {
	for _, tc := range []string{"released first", "revoked first", "old node taken for gone", "revoked as the old node is taken for gone"} {
		t.Run(tc, func(t *testing.T) { revocationRacingAClaim(t, tc) })
	}
}

func revocationRacingAClaim(t *testing.T, order string) {
	a, b, alice, bob := bobAwayOnA(t)
	seen := revocationsSeen(t, b)

	revoke := func() {
		n := a.node.CloseUser("bob", proto.CodeRevoked, "user disabled")
		switch {
		case order == "released first" && n != 0:
			t.Errorf("a ended %d of bob's sessions; it had let him go", n)
		case order == "old node taken for gone" && n > 1:
			// a may have handed bob over by now (b's state reached it).
			t.Errorf("a ended %d of bob's sessions, want at most 1", n)
		case order != "released first" && order != "old node taken for gone" && n != 1:
			t.Errorf("a ended %d of bob's sessions; it held him", n)
		}
		a.node.CloseUser("zed", proto.CodeRevoked, "marker")
		awaitUser(t, seen, "zed") // b has handled bob's revocation
	}
	claimHeld := make(chan struct{})
	var once sync.Once
	freeClaim := func() { once.Do(func() { close(claimHeld) }) }
	t.Cleanup(freeClaim) // before the nodes stop: Close waits for handlers
	switch order {
	case "released first":
		hook := func(st hub.SessionState) {
			if st.Member.User == "bob" {
				if a.hub.IsLocal(st.Member.Peer) {
					t.Error("a still holds bob after answering b's claim")
				}
				revoke()
			}
		}
		b.node.testHookClaimed.Store(&hook)
	default:
		entered := make(chan struct{})
		var in sync.Once
		hook := func(m *nats.Msg) {
			if m.Subject == a.node.subject("node", "a", "claim") {
				in.Do(func() { close(entered) })
				// Revoked first: until a has revoked. Taken for gone:
				// until b has given up (ClaimTimeout) and the test ends.
				<-claimHeld
			}
		}
		a.node.testHookHandle.Store(&hook)
		if order == "revoked first" {
			go func() {
				select {
				case <-entered:
				case <-time.After(wait):
					return
				}
				revoke()
				freeClaim()
			}()
		} else {
			took := func(st hub.SessionState) {
				if st.Member.User == "bob" {
					if !a.hub.IsLocal(st.Member.Peer) {
						t.Error("a let bob go; want it to hold him while b takes him")
					}
					if order != "old node taken for gone" {
						revoke()
					}
				}
			}
			b.node.testHookClaimed.Store(&took)
		}
	}

	checked := strconv.FormatInt(time.Now().UnixNano(), 10) // before the revocation
	back := b.dial("user=bob&checked=" + checked + "&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	if resumed := back.welcome.Resumed; resumed != (order != "revoked first") {
		t.Fatalf("%s: welcome on b %+v", order, back.welcome)
	}
	if order == "old node taken for gone" {
		revoke() // b holds bob now, and a still does
	}
	m := back.await(proto.TypeError, nil)
	var e proto.Error
	if err := json.Unmarshal(m.Data, &e); err != nil || e.Code != proto.CodeRevoked || e.Message != "user disabled" {
		t.Fatalf("error %s, want revoked: user disabled", m.Data)
	}
	<-back.closed
	alice.await(proto.TypePeerLeft, func(m *proto.Message) bool { return m.Room == "lobby" })
	eventually(t, "no node to hold bob's session", func() bool {
		return !a.hub.IsLocal(bob.peer()) && !b.hub.IsLocal(bob.peer()) && !b.hub.IsLocal(back.peer())
	})
	freeClaim()
	// No token of bob's resumes anything now, on either node (these
	// connections' credentials were checked after the revocation, as a
	// real server's would be refused; here they pass, and only the
	// tokens are tried).
	for _, tok := range []string{bob.welcome.ResumeToken, back.welcome.ResumeToken} {
		for _, n := range []*testNode{a, b} {
			if c := n.dial("user=bob&resume=" + url.QueryEscape(tok)); c.welcome.Resumed {
				t.Errorf("a resume on %s with a token of bob's revoked session succeeded", n.name)
			}
		}
	}
}

// TestRevocationReachesANodeCutOff: a revocation made while a node is cut
// off from NATS (taken for gone by the others, its clients still
// connected to it) reaches it when it is back. Revocations went over NATS
// core only, which keeps nothing for a subscriber that is away: alice's
// socket on a outlived her being disabled, for as long as it stayed open.
//
// The server forgets a's consumer of the revocation stream once nothing
// has read it for revocationConsumerIdle ("past the consumer's idle
// time": a cut longer than that, seen gone before the revocations go
// out); a picks up after the last revocation it took from the stream all
// the same, or, if it took none ("... before any"), at the sequence the
// stream had when it started.
func TestRevocationReachesANodeCutOff(t *testing.T) {
	for _, tc := range []struct {
		name         string
		idle, before bool // the cut lasts past the consumer's idle time; a took one revocation from the stream before it
	}{
		{"brief", false, false},
		{"past the consumer's idle time", true, true},
		{"past the consumer's idle time before any", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := natstest.Start(t)
			urls := srv.ClientURL()
			cfg := fastConfig()
			if tc.idle {
				cfg.revocationConsumerIdle = 100 * time.Millisecond
			}
			a, p, nc := startNodeBehindProxy(t, "a", urls, cfg, hub.Config{})
			b := startNode(t, "b", urls, fastConfig(), hub.Config{})
			alice, carol := a.dial("user=alice&login=L1"), a.dial("user=carol&login=L1")
			eventually(t, "b to know alice and carol", func() bool { return b.hub.Stats().Remote == 2 })
			seen := revocationsSeen(t, a)
			if tc.before {
				b.node.CloseUser("ann", proto.CodeRevoked, "before the cut")
				awaitUser(t, seen, "ann")
			}

			p.Cut()
			eventually(t, "a to lose NATS", func() bool { return !nc.IsConnected() })
			if tc.idle {
				eventually(t, "the server to forget a's consumer", func() bool { return revocationConsumers(t, b) == 1 }) // b's
			}
			b.node.CloseUser("alice", proto.CodeRevoked, "user disabled")
			b.node.MoveLogin("carol", "L1", "L2") // a password change
			b.node.CloseLogin("carol", "L2", proto.CodeRevoked, "signed out")
			p.Up()
			eventually(t, "a to reconnect", func() bool { return nc.IsConnected() })
			if err := nc.Flush(); err != nil { // the server has a's subscriptions again
				t.Fatal(err)
			}
			b.node.CloseUser("zed", proto.CodeRevoked, "marker")
			awaitUser(t, seen, "zed") // a has handled what came before
			expectRevoked(t, alice, "alice's socket on a node that was cut off when she was disabled")
			expectRevoked(t, carol, "carol's socket on a node that was cut off when her new sign-in was signed out of")
		})
	}
}

// revocationConsumers is how many consumers the revocation stream has.
func revocationConsumers(t *testing.T, tn *testNode) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	st, err := tn.node.js.Stream(ctx, revocationStream(tn.node.cfg.Subject))
	if err != nil {
		t.Fatal(err)
	}
	k := 0
	for range st.ListConsumers(ctx).Info() {
		k++
	}
	return k
}

// TestRevocationWithoutTheStream: the revocation stream takes in nothing
// ("refuses": every message is over the size it takes, as when its Raft
// group has no leader and a plain publish is lost to it without a word;
// "deleted": it is gone), and a revocation served by a still ends alice's
// session on b, over NATS core. Nodes read revocations from the stream
// only: none but the node that served it ended anything.
func TestRevocationWithoutTheStream(t *testing.T) {
	for _, how := range []string{"refuses", "deleted"} {
		t.Run(how, func(t *testing.T) {
			urls := natstest.Start(t).ClientURL()
			a := startNode(t, "a", urls, fastConfig(), hub.Config{})
			b := startNode(t, "b", urls, fastConfig(), hub.Config{})
			alice := b.dial("user=alice")

			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			js := a.node.js
			name := revocationStream(a.node.cfg.Subject)
			switch how {
			case "refuses":
				st, err := js.Stream(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				cfg := st.CachedInfo().Config
				cfg.MaxMsgSize = 1
				if _, err := js.UpdateStream(ctx, cfg); err != nil {
					t.Fatal(err)
				}
			case "deleted":
				if err := js.DeleteStream(ctx, name); err != nil {
					t.Fatal(err)
				}
			}

			if n := a.node.CloseUser("alice", proto.CodeRevoked, "user disabled"); n != 0 {
				t.Fatalf("a ended %d sessions; alice's is b's", n)
			}
			awaitRevoked(t, alice, "alice's socket on b, the revocation stream taking nothing")
			if how == "refuses" {
				st, err := js.Stream(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				if info, err := st.Info(ctx); err != nil || info.State.Msgs != 0 {
					t.Fatalf("the stream took the revocation in (%+v, %v): the test means it to refuse it", info.State, err)
				}
			}
		})
	}
}

// TestRevocationHandledOnce: a revocation comes to a node twice, over
// NATS core and from the stream, and the node handles it once. Here the
// stream's copy of bob's revocation is held at b until the one over NATS
// core has ended bob's session and bob has signed in again: his new
// session outlives the stream's copy, and b counts each revocation
// handled once and seen again once.
func TestRevocationHandledOnce(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{})
	bob := b.dial("user=bob")

	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before the nodes stop: Close waits for handlers
	seen := make(chan string, 64)
	hook := func(m *nats.Msg) {
		u, ok := revocationUser(b, m)
		if !ok || !fromStream(m) {
			return
		}
		if u == "bob" {
			close(held)
			<-release
		}
		seen <- u
	}
	b.node.testHookHandle.Store(&hook)

	a.node.CloseUser("bob", proto.CodeRevoked, "user disabled")
	awaitRevoked(t, bob, "bob's socket on b")
	checked := strconv.FormatInt(time.Now().UnixNano(), 10) // after the revocation
	again := b.dial("user=bob&checked=" + checked)
	select {
	case <-held:
	case <-time.After(wait):
		t.Fatal("the stream's copy of bob's revocation never reached b")
	}
	free()
	a.node.CloseUser("zed", proto.CodeRevoked, "marker")
	awaitUser(t, seen, "zed") // b is done with the stream's copy of bob's revocation

	ping, _ := json.Marshal(proto.Message{Type: proto.TypePing, ID: "alive?"})
	_ = again.ws.WriteMessage(websocket.TextMessage, ping) // fails if b ended the session
	if m := again.next(); m.Type != proto.TypePong {
		t.Fatalf("bob's new session got %s %s: b handled bob's revocation again", m.Type, m.Data)
	}
	count := func(via, result string) int {
		return int(testutil.ToFloat64(b.node.stats.revocations.WithLabelValues(via, result)))
	}
	eventually(t, "b to have both copies of both revocations", func() bool {
		return count(viaCore, "handled")+count(viaCore, "repeat")+count(viaStream, "handled")+count(viaStream, "repeat") == 4
	})
	if handled := count(viaCore, "handled") + count(viaStream, "handled"); handled != 2 {
		t.Errorf("b handled %d revocations; a sent 2", handled)
	}
	if count(viaCore, "handled") == 0 || count(viaStream, "repeat") == 0 {
		t.Errorf("bob's revocation: want it handled over NATS core and found seen from the stream")
	}
}

// awaitRevoked waits until c's session ends for a revocation.
func awaitRevoked(t *testing.T, c *client, what string) {
	t.Helper()
	m := c.await(proto.TypeError, nil)
	var e proto.Error
	if err := json.Unmarshal(m.Data, &e); err != nil || e.Code != proto.CodeRevoked {
		t.Fatalf("%s: got error %s, want revoked", what, m.Data)
	}
}

// TestMoveRacingAClaim: bob's session, on sign-in L1, is on node a, and
// his client resumes on node b (with a connection checked before the
// password change, of L1) while a serves a password change that moves
// L1's sessions to L2. Whichever of the move and the claim comes first at
// a, bob's session ends up on b on L2: signing out of L2 ends it.
//
//   - "released first": a lets bob go before its MoveLogin looks, and
//     leaves him to b (a proxy's sign-in is not a's to change); b hears
//     the move before the claim has put bob in place, and moves him as
//     the claim's connection attaches.
//   - "moved first": a moves bob, then answers the claim; b's session
//     takes the sign-in of the claim's connection, L1, and b's memory of
//     the move (heard before the claim completes) moves it again.
func TestMoveRacingAClaim(t *testing.T) {
	for _, order := range []string{"released first", "moved first"} {
		t.Run(order, func(t *testing.T) {
			urls := natstest.Start(t).ClientURL()
			a := startNode(t, "a", urls, fastConfig(), hub.Config{ResumeWindow: time.Minute})
			b := startNode(t, "b", urls, fastConfig(), hub.Config{})
			bob := a.dial("user=bob&login=L1")
			dropSocket(bob)
			eventually(t, "a to see bob's socket drop", func() bool { return a.hub.Stats().Connections == 0 })
			eventually(t, "b to know bob's session", func() bool { return b.hub.Stats().Remote == 1 })
			seen := revocationsSeen(t, b)

			move := func(want int) {
				if n := a.node.MoveLogin("bob", "L1", "L2"); n != want {
					t.Errorf("a moved %d of bob's sessions, want %d", n, want)
				}
				a.node.CloseUser("zed", proto.CodeRevoked, "marker")
				awaitUser(t, seen, "zed") // b has handled bob's move
			}
			claimHeld := make(chan struct{})
			var once sync.Once
			freeClaim := func() { once.Do(func() { close(claimHeld) }) }
			t.Cleanup(freeClaim)
			if order == "released first" {
				hook := func(st hub.SessionState) {
					if st.Member.User == "bob" {
						move(0)
					}
				}
				b.node.testHookClaimed.Store(&hook)
			} else {
				var in sync.Once
				hook := func(m *nats.Msg) {
					if m.Subject == a.node.subject("node", "a", "claim") {
						in.Do(func() {
							move(1)
							freeClaim()
						})
						<-claimHeld
					}
				}
				a.node.testHookHandle.Store(&hook)
			}

			checked := strconv.FormatInt(time.Now().UnixNano(), 10) // before the password change
			back := b.dial("user=bob&login=L1&checked=" + checked + "&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
			if !back.welcome.Resumed || back.peer() != bob.peer() {
				t.Fatalf("welcome on b %+v, want bob's session claimed", back.welcome)
			}
			if n := a.node.CloseLogin("bob", "L2", proto.CodeRevoked, "signed out"); n != 0 {
				t.Errorf("a ended %d of bob's sessions; b holds him", n)
			}
			m := back.await(proto.TypeError, nil)
			var e proto.Error
			if err := json.Unmarshal(m.Data, &e); err != nil || e.Code != proto.CodeRevoked || e.Message != "signed out" {
				t.Fatalf("error %s, want revoked: signed out", m.Data)
			}
		})
	}
}

// TestSeenRevocations: a node knows a revocation's id again for as long
// as the stream may bring it (revocationSeenFor), forgets it after, and
// keeps at most maxSeenRevocations ids, forgetting the oldest first.
func TestSeenRevocations(t *testing.T) {
	t0 := time.Now()
	var s seenRevocations
	if !s.add("r1", t0) || s.add("r1", t0.Add(time.Second)) {
		t.Fatal("r1: want new, then seen")
	}
	if s.add("r1", t0.Add(revocationSeenFor)) {
		t.Error("r1 forgotten within revocationSeenFor")
	}
	if !s.add("r2", t0.Add(revocationSeenFor+time.Second)) || !s.add("r1", t0.Add(revocationSeenFor+time.Second)) {
		t.Error("r1 still known after revocationSeenFor")
	}
	if len(s.ids) != 2 || len(s.order) != 2 {
		t.Errorf("%d ids, %d in order; want r2 and r1", len(s.ids), len(s.order))
	}

	var full seenRevocations
	for i := range maxSeenRevocations + 10 {
		full.add(strconv.Itoa(i), t0)
	}
	if len(full.ids) != maxSeenRevocations || len(full.order) != maxSeenRevocations {
		t.Errorf("%d ids, %d in order; want %d", len(full.ids), len(full.order), maxSeenRevocations)
	}
	if full.add(strconv.Itoa(maxSeenRevocations+9), t0) || !full.add("0", t0) {
		t.Error("want the newest kept and the oldest forgotten")
	}
}

// TestRevocationOutlivesTheServingNodesCut: a serves a sign-out (the
// store took it a moment before) and queues its news, and a's NATS
// connection drops before the news goes out (its outbox was behind, here
// held, as a connection whose buffer is full holds it). The news must go
// out once a is back: it once went nowhere, neither over NATS core nor
// into the stream (a's publish failed at once, with nothing buffered
// while disconnected), no node found a gap (the stream had none), and
// alice's socket on b outlived her sign-out for as long as it stayed
// open.
func TestRevocationOutlivesTheServingNodesCut(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a, p, nc := startNodeBehindProxy(t, "a", urls, fastConfig(), hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{})
	alice := b.dial("user=alice&login=L1")
	eventually(t, "a to know alice", func() bool { return a.hub.Stats().Remote == 1 })
	seen := revocationsSeen(t, b)

	held, let := holdOutbox(t, a, func(subject string, _ []byte) bool { return subject == a.node.subject("revoke") })
	if n := a.node.CloseLogin("alice", "L1", proto.CodeRevoked, "signed out"); n != 0 {
		t.Fatalf("a ended %d sessions; alice's is b's", n)
	}
	<-held
	p.Cut()
	eventually(t, "a to lose NATS", func() bool { return !nc.IsConnected() })
	let() // the publish finds no connection
	p.Up()
	eventually(t, "a to reconnect", func() bool { return nc.IsConnected() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	a.node.CloseUser("zed", proto.CodeRevoked, "marker")
	awaitUser(t, seen, "zed") // b has handled what a sent before
	expectRevoked(t, alice, "alice's socket on b, signed out on a as a lost NATS")
}
