package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// A node takes another for gone on silence alone, and under load one is
// often back a moment later (TestClusterStress saw it many times a run),
// never having missed a beat itself, with the proxies of this node's
// sessions. A session that ended on this node meanwhile must still end
// there: its Gone went only to the nodes alive, and the directory did not
// always carry the end instead (its entry never written, or its removal
// taken for that of an older node's entry), so the session stayed online
// in its rooms on the other node for good.
func TestGoneReachesANodeTakenForGone(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	cfg := fastConfig()
	cfg.OrphanGrace = wait // b is taken for gone, not removed, for the whole test
	a := startNode(t, "a", urls, cfg, hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{})
	alice := a.dial("user=alice")
	alice.join("lobby")
	eventually(t, "b to see alice in lobby", func() bool { return b.hub.RoomMembers("lobby") == 1 })

	holdHeartbeats(t, a, "b") // a stops hearing b
	eventually(t, "a to take b for gone", func() bool { return a.node.live.isGone("b") })

	toB := listen(t, urls, "khadga.node.b")
	_ = alice.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	<-alice.closed
	eventually(t, "alice's session to end on a", func() bool { return a.hub.Stats().Sessions == 0 })
	for deadline := time.Now().Add(wait); ; {
		m, err := toB.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("no Gone of alice sent to b, which a took for gone a moment ago: %v", err)
		}
		var s stateMsg
		if len(m.Data) > 0 && m.Data[0] == opState && json.Unmarshal(m.Data[1:], &s) == nil && s.Peer == alice.peer() && s.Gone {
			break
		}
	}
	eventually(t, "alice to leave lobby on b", func() bool {
		return b.hub.RoomMembers("lobby") == 0 && !dirAlive(b, alice.peer())
	})
}

// The same for longer: a takes b for gone and removes b's sessions, while
// b hears a all along (a cut one way only, or a late to read b's
// heartbeats) and keeps the proxies of a's sessions. Nothing goes to b
// meanwhile; once a hears b again, it sends b what b missed: alice's end.
func TestEndsReachANodeWhoseSessionsWereRemoved(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{})
	alice := a.dial("user=alice")
	alice.join("lobby")
	eventually(t, "b to see alice in lobby", func() bool { return b.hub.RoomMembers("lobby") == 1 })

	free := holdHeartbeats(t, a, "b")
	eventually(t, "a to remove b's sessions", func() bool { return cleaned(a, "b") })

	toB := listen(t, urls, "khadga.node.b")
	_ = alice.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	<-alice.closed
	eventually(t, "alice's session to end on a", func() bool { return a.hub.Stats().Sessions == 0 })
	free() // a hears b again
	for deadline := time.Now().Add(wait); ; {
		m, err := toB.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("no Gone of alice sent to b once a heard b again: %v", err)
		}
		var s stateMsg
		if len(m.Data) > 0 && m.Data[0] == opState && json.Unmarshal(m.Data[1:], &s) == nil && s.Peer == alice.peer() && s.Gone {
			break
		}
	}
	eventually(t, "alice to leave lobby on b", func() bool {
		return b.hub.RoomMembers("lobby") == 0 && !dirAlive(b, alice.peer())
	})
}

// holdHeartbeats makes tn deaf to node's heartbeats (its handler waits)
// until the returned func is called, which the test's cleanup also does
// (before the nodes stop: Close waits for handlers).
func holdHeartbeats(t *testing.T, tn *testNode, node string) (free func()) {
	release := make(chan struct{})
	var once sync.Once
	free = func() {
		once.Do(func() {
			tn.node.testHookHandle.Store(nil)
			close(release)
		})
	}
	t.Cleanup(free)
	hold := func(m *nats.Msg) {
		if m.Subject == "khadga.hb" && bytes.Contains(m.Data, []byte(`"node":"`+node+`"`)) {
			<-release
		}
	}
	tn.node.testHookHandle.Store(&hold)
	return free
}

// cleaned reports whether tn has removed node's sessions as a node gone.
func cleaned(tn *testNode, node string) bool {
	tn.node.live.mu.Lock()
	defer tn.node.live.mu.Unlock()
	st := tn.node.live.nodes[node]
	return st != nil && st.cleaned
}

// A node that takes another for gone and removes its sessions forgot the
// tombstones of that node's ended sessions with them. A state of one that
// came after (in TestClusterStress: a write of an old node of the session
// that was seconds behind, and the watch restarted when the node was
// heard again, which read it) found nothing to be older than, and the
// ended session was alive again, for good.
func TestRemovedNodeKeepsItsTombstones(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{})
	bob, carol := b.dial("user=bob"), b.dial("user=carol")
	bob.join("lobby")
	eventually(t, "a to see bob in lobby", func() bool { return a.hub.RoomMembers("lobby") == 1 })
	a.node.dir.imu.Lock()
	stale, at := a.node.dir.byPeer[bob.peer()].st, a.node.dir.byPeer[bob.peer()].applied // bob's last state
	a.node.dir.imu.Unlock()
	_ = bob.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	<-bob.closed
	eventually(t, "bob to end on a", func() bool { return a.hub.RoomMembers("lobby") == 0 && !dirAlive(a, bob.peer()) })

	free := holdHeartbeats(t, a, "b")
	eventually(t, "a to remove b's sessions", func() bool { return cleaned(a, "b") && a.hub.Stats().Remote == 0 })
	_ = carol // her proxy's removal shows that a's directory dropped b's sessions
	// bob's last state comes again (from the KV watch, say) ...
	a.node.dir.applyMu.Lock()
	a.node.dir.applyState(bob.peer(), stale, at)
	a.node.dir.applyMu.Unlock()
	free()
	if dirAlive(a, bob.peer()) || a.hub.RoomMembers("lobby") != 0 {
		t.Fatal("bob, who ended, is alive again on a after a removed b's sessions")
	}
}

// Publish takes a session's stamp and queues its directory write in two
// steps, with no lock held between them (the hub calls it so), and the
// session's end can come in between: its removal may then be queued,
// taken by the writer and written before the state is queued. The writer
// wrote that state after the removal: the ended session was back in the
// KV bucket with the node's name, alive to every node that read it later
// (a node that starts, a watch restarted, a node whose tombstone of it
// had expired, or that forgot it with the node's sessions when it took
// the node for gone a moment), and nothing would ever remove it while the
// node lived.
func TestStateQueuedAfterTheEndIsNotWritten(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	kv := a.node.kv
	ctx := context.Background()
	inKV := func(peer string) bool {
		_, err := kv.Get(ctx, peer)
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	d := a.node.dir
	bob := hub.SessionState{Member: proto.Member{Peer: "bob1", User: "bob", Role: proto.RoleUser}, Node: "a"}
	a.node.Publish(bob)
	eventually(t, "bob's entry", func() bool { return inKV("bob1") })

	// Publish of bob's join: the stamp is taken ...
	joined := bob
	joined.Rooms = []string{"lobby"}
	at, ok := d.local(joined)
	if !ok {
		t.Fatal("a live session's state refused")
	}
	// ... bob's session ends, and its removal is written ...
	a.node.Gone("bob1")
	eventually(t, "bob's entry to be removed", func() bool { return !inKV("bob1") })
	// ... and then the write of the join is queued.
	d.queue("bob1", &queuedState{st: &joined, at: at})

	// carol's entry is written after it, by the same writer.
	a.node.Publish(hub.SessionState{Member: proto.Member{Peer: "carol1", User: "carol", Role: proto.RoleUser}, Node: "a"})
	eventually(t, "carol's entry", func() bool { return inKV("carol1") })
	if inKV("bob1") {
		t.Fatal("bob's session ended, and its state taken before the end was written to the directory after its removal")
	}
}

// A node whose directory writer is behind may write a state of a session
// after a claim took the session to another node and the other node's
// entry is written: its compare-and-swap is on the revision it saw in the
// watch, the other node's, and succeeds. The entry said the session was
// this node's again, in an older epoch, until the new node wrote again; a
// node that read it meanwhile (starting, or its watch restarted) would
// send a resume's claim to the wrong node, and the resume would fail.
func TestStaleWriteDoesNotOverwriteTheNewNodesEntry(t *testing.T) {
	a, _, alice, _, stale := staleThenResumedOnB(t)
	// a's writer, behind, writes the state it had queued before the claim.
	if err := a.node.dir.put(context.Background(), alice.peer(), stale); err != nil {
		t.Fatal(err)
	}
	if got := kvRecord(a, alice.peer()).Node; got != "b" {
		t.Fatalf("alice's entry says node %q after a stale write of a; want b", got)
	}
}

// staleThenResumedOnB starts nodes a and b with alice in lobby on a,
// takes a copy of the state a would write of her (as a writer that is
// behind holds it), and resumes her on b: it returns once b's entry of
// her is written and a's directory knows it, with its revision.
func staleThenResumedOnB(t *testing.T) (a, b *testNode, alice, onB *client, stale *queuedState) {
	t.Helper()
	urls := natstest.Start(t).ClientURL()
	a = startNode(t, "a", urls, fastConfig(), hub.Config{ResumeWindow: wait})
	b = startNode(t, "b", urls, fastConfig(), hub.Config{ResumeWindow: wait})
	alice = a.dial("user=alice")
	alice.join("lobby")
	eventually(t, "alice's entry", func() bool { return kvRecord(a, alice.peer()).Node == "a" })
	// b resumes alice only once it knows her session (and her token).
	eventually(t, "b to see alice in lobby", func() bool { return b.hub.RoomMembers("lobby") == 1 })
	a.node.dir.imu.Lock()
	e := a.node.dir.byPeer[alice.peer()]
	stale = &queuedState{st: new(hub.SessionState), at: e.applied}
	*stale.st = e.st
	a.node.dir.imu.Unlock()

	dropSocket(alice)
	onB = b.dial("user=alice&resume=" + alice.welcome.ResumeToken)
	if !onB.welcome.Resumed {
		t.Fatal("alice did not resume on b")
	}
	eventually(t, "b's entry for alice, in a's directory", func() bool {
		en, err := a.node.kv.Get(context.Background(), alice.peer())
		return err == nil && kvRecord(a, alice.peer()).Node == "b" && a.dirNode(alice.peer()) == "b" &&
			en.Revision() == a.node.dir.revision(alice.peer())
	})
	return a, b, alice, onB, stale
}

// kvRecord is peer's entry in the directory's bucket, as tn reads it
// (zero if there is none).
func kvRecord(tn *testNode, peer string) record {
	var r record
	if e, err := tn.node.kv.Get(context.Background(), peer); err == nil {
		_ = json.Unmarshal(e.Value(), &r)
	}
	return r
}

// A writer behind by a session's trip round the nodes: a queues a state
// of alice, she resumes on b and then on a again, and only then does a's
// writer get to that state. It must not be written: it would put alice's
// old state (her old epoch and token) over the entry of her current one,
// for every node that reads the entry later. And when the write conflicts
// with b's entry of her, a's writer read b's higher epoch and handed the
// session, which a holds again in a yet higher one, back to b (a's
// client's socket dropped, b's token unknown: TestClaimStorm, 1 run in
// about 150 under load).
func TestStaleWriteAfterTheSessionCameBack(t *testing.T) {
	a, _, alice, onB, stale := staleThenResumedOnB(t)
	entry := func() record { return kvRecord(a, alice.peer()) }
	dropSocket(onB)
	back := a.dial("user=alice&resume=" + onB.welcome.ResumeToken)
	if !back.welcome.Resumed {
		t.Fatal("alice did not resume on a again")
	}
	want := sha256.Sum256([]byte(back.welcome.ResumeToken))
	eventually(t, "a's new entry for alice", func() bool {
		r := entry()
		en, err := a.node.kv.Get(context.Background(), alice.peer())
		return r.Node == "a" && string(r.Token) == string(want[:]) && err == nil && en.Revision() == a.node.dir.revision(alice.peer())
	})
	current := entry()

	if err := a.node.dir.put(context.Background(), alice.peer(), stale); err != nil {
		t.Fatal(err)
	}
	if got := entry(); got.Epoch != current.Epoch || got.Ver != current.Ver || string(got.Token) != string(want[:]) {
		t.Errorf("alice's entry is at epoch %d.%d after a stale write of a, want %d.%d with her current token", got.Epoch, got.Ver, current.Epoch, current.Ver)
	}
	if !a.hub.IsLocal(alice.peer()) {
		t.Error("a let alice go after a stale write")
	}
}

// The hub takes a session's state and hands it to Publish with no lock
// held (a leave, a resume), and a claim can take the session to another
// node in between: the old node's Release, the new node's state (a higher
// epoch) applied here, then the late Publish. It took a stamp after the
// new node's, in the new epoch, with this node's name: the new node took
// that for a move back here, handed the session over (dropping the
// client's new socket) and nobody held it any more. Its proxies stayed in
// their rooms on every node, and the client's token was valid nowhere.
func TestPublishAfterReleaseDoesNotTakeTheSessionBack(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{ResumeWindow: wait})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{ResumeWindow: wait})
	alice, carol := a.dial("user=alice"), a.dial("user=carol")
	alice.join("lobby")
	eventually(t, "b to see alice in lobby", func() bool { return b.hub.RoomMembers("lobby") == 1 })
	var stale hub.SessionState // what a's hub takes for a Publish, before the claim
	for _, st := range a.hub.LocalStates() {
		if st.Member.Peer == alice.peer() {
			stale = st
		}
	}
	dropSocket(alice)
	resumed := b.dial("user=alice&resume=" + alice.welcome.ResumeToken)
	if !resumed.welcome.Resumed || resumed.peer() != alice.peer() {
		t.Fatalf("alice did not resume on b: %+v", resumed.welcome)
	}
	eventually(t, "a to learn that b holds alice", func() bool { return a.dirNode(alice.peer()) == "b" })

	a.node.Publish(stale) // late
	if got := a.dirNode(alice.peer()); got != "b" {
		t.Fatalf("a's directory says %q holds alice after a late Publish of a; want b", got)
	}
	// carol's join goes to b after anything a sent of alice.
	carol.join("x")
	eventually(t, "b to see carol in x", func() bool { return b.hub.RoomMembers("x") == 1 })
	if !b.hub.IsLocal(alice.peer()) {
		t.Fatal("b handed alice back to a on a late Publish of a, which no longer holds her")
	}
}

// TestGoneReachesTheOthersAfterACut: bob's session on a is known to b
// from a's direct message, and its directory entry is not written yet
// (here the bucket refuses a's writes; in production its writer is
// behind, or its write is on its way) when a loses NATS for a moment,
// shorter than b's DeadAfter. bob leaves meanwhile: his end's direct
// message fails (nothing is buffered while disconnected), and the
// directory has nothing to remove. Once a is back, b must hear of the
// end: it kept bob online in lobby for as long as a lived.
func TestGoneReachesTheOthersAfterACut(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	slow := fastConfig()
	slow.DeadAfter = time.Hour // b never takes a for gone: the cut is too short
	b := startNode(t, "b", urls, slow, hub.Config{})
	a, p, nc := startNodeBehindProxy(t, "a", urls, fastConfig(), hub.Config{})
	refuseEntryWrites(t, a)

	eventually(t, "a to hear b", func() bool { return len(a.node.live.listening()) == 1 })
	bob := a.dial("user=bob")
	bob.join("lobby")
	eventually(t, "b to see bob in lobby", func() bool { return b.hub.RoomMembers("lobby") == 1 })

	p.Cut()
	eventually(t, "a to lose NATS", func() bool { return !nc.IsConnected() })
	_ = bob.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	<-bob.closed
	eventually(t, "bob's session to end on a", func() bool { return a.hub.Stats().Sessions == 0 })
	p.Up()
	eventually(t, "a to reconnect", func() bool { return nc.IsConnected() })
	eventually(t, "bob to leave lobby on b", func() bool {
		return b.hub.RoomMembers("lobby") == 0 && !dirAlive(b, bob.peer())
	})
}

// TestGoneRefusedByAFullOutboxGoesLater: a session's end that a full
// outbox refused (NATS slow to take what the node sends) is sent again
// once the outbox has room. For a session whose entry was never written
// (here every entry write is refused; under load, its state and its end
// meet in the writer's queue) the end has no other way to the other
// nodes, which kept the session online in its rooms for good.
func TestGoneRefusedByAFullOutboxGoesLater(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	slow := fastConfig()
	slow.DeadAfter = time.Hour // b never takes a for gone
	b := startNode(t, "b", urls, slow, hub.Config{})
	acfg := fastConfig()
	acfg.Outbox = 20
	a := startNode(t, "a", urls, acfg, hub.Config{})
	refuseEntryWrites(t, a)

	eventually(t, "a to hear b", func() bool { return len(a.node.live.listening()) == 1 })
	carol := a.dial("user=carol")
	carol.join("lobby")
	eventually(t, "b to see carol in lobby", func() bool { return b.hub.RoomMembers("lobby") == 1 })

	held, let := holdOutbox(t, a, nil)
	a.node.out.publish("khadga.test.filler", []byte("x"))
	<-held
	for a.node.out.publish("khadga.test.filler", []byte("x")) {
	}
	_ = carol.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	<-carol.closed
	eventually(t, "carol's session to end on a", func() bool { return a.hub.Stats().Sessions == 0 })
	let()
	eventually(t, "carol to leave lobby on b", func() bool {
		return b.hub.RoomMembers("lobby") == 0 && !dirAlive(b, carol.peer())
	})
}

// refuseEntryWrites has every write of tn's sessions' directory entries
// refused by the store, as if none were ever written.
func refuseEntryWrites(t *testing.T, tn *testNode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	st, err := tn.node.js.Stream(ctx, "KV_"+tn.node.cfg.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxMsgSize = 1
	if _, err := tn.node.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}
