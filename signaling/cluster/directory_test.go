package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// Sessions that open and close (code 1000) leave nothing behind in any
// node's directory once their tombstones expire. They leaked three ways:
// the revision recorded after a KV removal recreated an entry the watch
// had just removed; a session that ended before its first KV write was
// never removed (nothing to delete, so nothing to watch); and a direct
// Gone that came after the watch's removal recreated the entry.
func TestEndedSessionsLeaveNoDirectoryEntries(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	cfg := fastConfig()
	cfg.tombstoneTTL = 300 * time.Millisecond
	a := startNode(t, "a", urls, cfg, hub.Config{})
	b := startNode(t, "b", urls, cfg, hub.Config{})
	const n = 200
	for i := range n {
		c := a.dial(fmt.Sprintf("user=u%d", i))
		_ = c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
		<-c.closed
	}
	eventually(t, "every session to end", func() bool { return a.hub.Stats().Sessions == 0 && b.hub.Stats().Remote == 0 })
	eventually(t, "every directory entry to go", func() bool { return dirSize(a) == 0 && dirSize(b) == 0 })
}

func dirSize(tn *testNode) int {
	tn.node.dir.imu.Lock()
	defer tn.node.dir.imu.Unlock()
	return len(tn.node.dir.byPeer)
}

// The hub takes a session's state and hands it to Publish with no lock
// held, so a revocation (or an expiry) can end the session in between, and
// its Gone then comes before the Publish of the state taken earlier. That
// Publish must not bring the session back: it did, with a newer stamp than
// the Gone's, on every node and in the KV bucket, for good (a ghost online
// in its rooms that nobody would ever remove).
func TestPublishAfterGoneDoesNotResurrect(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{})
	var once sync.Once
	hook := func(st hub.SessionState) {
		if st.Member.User == "alice" {
			// alice's first state is taken: end her before it goes out.
			once.Do(func() { a.hub.CloseUser("alice", proto.CodeRevoked, "signed out") })
		}
	}
	a.node.testHookPublish.Store(&hook)
	alice := a.dial("user=alice")
	<-alice.closed
	eventually(t, "alice's session to end on a", func() bool { return a.hub.Stats().Sessions == 0 })
	// carol's state goes to b after alice's, on the same subject, and to
	// the KV bucket after alice's, by the same writer.
	carol := a.dial("user=carol")
	// The directory takes carol's entry before the hub gets her proxy.
	eventually(t, "b to know carol", func() bool { return b.dirNode(carol.peer()) == "a" && b.hub.Stats().Remote >= 1 })
	if got := b.hub.Stats().Remote; got != 1 || dirAlive(b, alice.peer()) {
		t.Fatalf("b has %d sessions of a (alice alive in its directory: %v); want carol's only", got, dirAlive(b, alice.peer()))
	}
	kv := a.node.kv
	eventually(t, "carol's KV entry", func() bool {
		_, err := kv.Get(context.Background(), carol.peer())
		return err == nil
	})
	if e, err := kv.Get(context.Background(), alice.peer()); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("alice, who ended, is in the KV bucket: %v %v", e, err)
	}
	if dirAlive(a, alice.peer()) {
		t.Fatalf("a's directory has alice, who ended, as alive")
	}
}

// dirAlive reports whether tn's directory has peer as a live session.
func dirAlive(tn *testNode, peer string) bool {
	tn.node.dir.imu.Lock()
	defer tn.node.dir.imu.Unlock()
	e := tn.node.dir.byPeer[peer]
	return e != nil && !e.gone
}

// TestNoStateAfterTheEnd: once a local session's end has its stamp, a
// Publish that raced with it is refused. The end used to take its stamp
// and mark the entry gone in two steps, and a Publish between them took a
// later stamp: the session lived on everywhere as a ghost.
func TestNoStateAfterTheEnd(t *testing.T) {
	d := newDirectory(&Node{id: "a"})
	st := hub.SessionState{Member: proto.Member{Peer: "p1", User: "bob"}}
	if _, ok := d.local(st); !ok {
		t.Fatal("a live session's state refused")
	}
	end := d.end("p1")
	if at, ok := d.local(st); ok {
		t.Fatalf("a state after the end (stamp %v) was taken, with stamp %v", end, at)
	}
}
