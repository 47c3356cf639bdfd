package cluster

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// TestOutboxBoundedInBytes: while a node's NATS connection takes nothing
// (from the first of the signals below, whose publish blocks), one user's
// signals near the size limit to a peer on another node fill the outbox
// up to its bytes, the batch being published included, not its 65536
// messages (4 GiB of them); past that the sender is told each signal was
// not delivered, and once NATS takes again, everything not refused
// arrives in order and another user's signals go through. The outbox
// forgot the batch being published as it began to publish it, and took a
// full batch more behind it: up to twice its bytes held for signals (and
// four times for the rest).
func TestOutboxBoundedInBytes(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	cfg := fastConfig()
	cfg.OutboxBytes = 1 << 20
	a := startNode(t, "a", urls, cfg, hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{})
	alice, bob := inLobby(a, b)
	carol, dave := inLobby(a, b)

	const n, size = 30, 50 << 10 // 1.5 MB: within the sender's own limits
	held, let := holdOutbox(t, a, func(_ string, data []byte) bool { return len(data) > size })

	pad := strings.Repeat("x", size)
	for i := range n {
		alice.signal(bob.peer(), fmt.Sprintf("s%d", i), fmt.Sprintf(`{"n":%d,"pad":%q}`, i, pad))
		if i == 0 {
			<-held // s0 is being published, and NATS takes nothing more
		}
	}
	alice.send(proto.Message{Type: proto.TypePing, ID: "p"})
	refused := map[string]bool{}
	for m := alice.next(); m.Type != proto.TypePong; m = alice.next() {
		var e proto.Error
		if m.Type == proto.TypeError && json.Unmarshal(m.Data, &e) == nil && e.Code == proto.CodePeerUnavailable {
			refused[m.Ref] = true
		}
	}
	// Every signal not refused waits in a's outbox now, s0 in the batch
	// being published and the others queued: none went further.
	if waiting := n - len(refused); waiting*size > cfg.OutboxBytes {
		t.Errorf("%d signals of %d KiB wait in an outbox of %d KiB", waiting, size>>10, cfg.OutboxBytes>>10)
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

// TestOutboxFullOfSignalsKeepsSessionStates: while a node's NATS
// connection takes nothing, one user's signals fill its outbox (here 20
// messages). A session that then starts, joins a room and ends there
// still has its states and its end queued for the other nodes, which see
// it come and go once NATS takes again. They were refused as the signals
// were, and the direct way is what carries a session's end: from the
// directory alone, the end of a session whose last state came directly
// is taken for the removal of an older entry, and the session may stay
// online elsewhere (docs/cluster.md, "Why a session's state goes two
// ways").
func TestOutboxFullOfSignalsKeepsSessionStates(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	// Default liveness: a node that takes b for gone on a loaded machine
	// sends it no states.
	cfg := Config{Outbox: 20}
	a := startNode(t, "a", urls, cfg, hub.Config{})
	b := startNode(t, "b", urls, Config{}, hub.Config{})
	alice, bob := inLobby(a, b)
	_, let := holdOutbox(t, a, nil)

	for i := range 2 * cfg.Outbox {
		alice.signal(bob.peer(), fmt.Sprint("s", i), `{"n":1}`)
	}
	alice.await(proto.TypeError, func(m *proto.Message) bool { return m.Ref == fmt.Sprint("s", 2*cfg.Outbox-1) })
	carol := a.dial("user=carol")
	carol.join("lobby")
	_ = carol.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(wait))
	// The hub takes carol out of lobby before it tells the node she is
	// gone: her end is queued a moment after lobby has two members.
	eventually(t, "carol's end to be queued for node b", func() bool { return queuedFor(a, "b", carol.peer(), `"gone":true`) })
	let()
	eventually(t, "b to see carol come and go", func() bool {
		return b.dirNode(carol.peer()) == "a" && !b.hub.IsLocal(carol.peer()) && b.hub.RoomMembers("lobby") == 2 && tombstone(b, carol.peer())
	})
}

// tombstone reports whether tn's directory has peer as ended.
func tombstone(tn *testNode, peer string) bool {
	tn.node.dir.imu.Lock()
	defer tn.node.dir.imu.Unlock()
	e := tn.node.dir.byPeer[peer]
	return e != nil && e.gone
}

// holdOutbox has tn's NATS connection take nothing from its outbox, as a
// connection whose buffer is full would (the publish blocks), from the
// first publish that from accepts (nil: the next one) until the returned
// let (or the test's end) lets it go on. held is closed once a publish
// waits.
func holdOutbox(t *testing.T, tn *testNode, from func(subject string, data []byte) bool) (held <-chan struct{}, let func()) {
	release, stuck := make(chan struct{}), make(chan struct{})
	var stick sync.Once
	hold := func(subject string, data []byte) {
		select {
		case <-stuck:
		default:
			if from != nil && !from(subject, data) {
				return
			}
			stick.Do(func() { close(stuck) })
		}
		<-release
	}
	tn.node.testHookSend.Store(&hold)
	var once sync.Once
	let = func() { once.Do(func() { close(release) }) }
	t.Cleanup(let)
	return stuck, let
}

// queuedFor reports whether tn's outbox holds a state of peer for node
// that contains text, queued or in the batch being published (held by
// holdOutbox before its first message: none of it is given back yet).
func queuedFor(tn *testNode, node, peer, text string) bool {
	o := tn.node.out
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range slices.Concat(o.msgs, o.flying.msgs) {
		if m.subject == tn.node.subject("node", node) && len(m.data) > 0 && m.data[0] == opState &&
			strings.Contains(string(m.data), peer) && strings.Contains(string(m.data), text) {
			return true
		}
	}
	return false
}

// TestSignalFatesBoundedInAFullOutbox: while b's NATS connection takes
// nothing from its outbox (of 20 messages here), alice (on a) sends bob
// (on b) 100 signals. Bob gets them all; b's outbox keeps the acks of
// twice its limit of them and drops the rest, counted. Once NATS takes
// again, a hears the acks kept; for each one dropped, and for no other
// signal, alice is told after AckWait that her signal was not delivered
// ("did not answer"): a false alarm, never silence. b's outbox held every
// ack, without bound.
func TestSignalFatesBoundedInAFullOutbox(t *testing.T) {
	a, b, alice, bob := smallOutboxOnB(t, hub.Config{})
	_, let := holdOutbox(t, b, nil)

	const n = 100
	for i := range n {
		alice.signal(bob.peer(), fmt.Sprint("s", i), `{"n":1}`)
	}
	for range n {
		bob.expectSignal(alice.peer())
	}
	dropped := fatesBounded(t, b, "a", n, "acks")

	let()
	toldNotDelivered(t, a, alice, dropped, "did not answer")
}

// TestDeliveredNoticesBoundedInAFullOutbox: bob's socket on b is away,
// and alice (on a) sends him 60 signals, which b holds. While b's NATS
// connection takes nothing from its outbox (of 20 messages here), bob
// resumes on b and gets them all; b's outbox keeps the notices that they
// reached him up to twice its limit, and drops the rest, counted. Once
// NATS takes again, a hears the notices kept; for each one dropped, and
// for no other signal, alice is told after HeldWait that her signal was
// not delivered ("did not reach the peer in time"). b's outbox held every
// notice, without bound.
func TestDeliveredNoticesBoundedInAFullOutbox(t *testing.T) {
	a, b, alice, bob := smallOutboxOnB(t, hub.Config{ResumeWindow: time.Minute})
	dropSocket(bob)
	eventually(t, "b to see bob's socket drop", func() bool { return b.hub.Stats().Connections == 0 })

	// Twenty at a time: their acks ("held") fit in b's outbox too.
	const n = 60 // within an absent session's queue (64)
	for i := range n {
		alice.signal(bob.peer(), fmt.Sprint("s", i), `{"n":1}`)
		if (i+1)%b.node.cfg.Outbox == 0 {
			eventually(t, "a to hear that b holds the signals", func() bool { return heldAt(a) == i+1 })
		}
	}
	_, let := holdOutbox(t, b, nil)
	back := b.dial("user=bob&resume=" + url.QueryEscape(bob.welcome.ResumeToken))
	for range n {
		back.expectSignal(alice.peer())
	}
	dropped := fatesBounded(t, b, "a", n, "notices")

	let()
	toldNotDelivered(t, a, alice, dropped, "did not reach the peer in time")
}

// toldNotDelivered expects sender, on tn, to be told of n signals, each
// once, that they were not delivered, with text in the error, and of
// nothing else once tn tracks no signal.
func toldNotDelivered(t *testing.T, tn *testNode, sender *client, n int, text string) {
	t.Helper()
	told := map[string]bool{}
	for len(told) < n {
		m := sender.next()
		if m.Type != proto.TypeError || !strings.Contains(string(m.Data), text) || told[m.Ref] {
			t.Fatalf("got %s %s %s, waiting to be told of %d signals not delivered (%q)", m.Type, m.Ref, m.Data, n, text)
		}
		told[m.Ref] = true
	}
	eventually(t, tn.name+" to settle every signal", func() bool { return heldAt(tn) == 0 && pendingAt(tn) == 0 })
	sender.send(proto.Message{Type: proto.TypePing, ID: "p"})
	for m := sender.next(); m.Type != proto.TypePong; m = sender.next() {
		t.Errorf("got %s %s %s; told of %d signals not delivered, and of those only", m.Type, m.Ref, m.Data, n)
	}
}

// pendingAt returns how many signals tn tracks (heldAt: how many of them
// are held for an absent session).
func pendingAt(tn *testNode) int {
	tn.node.track.mu.Lock()
	defer tn.node.track.mu.Unlock()
	return len(tn.node.track.m)
}

// smallOutboxOnB starts nodes a and b, b with an outbox of 20 messages
// and the hub config bh, and alice on a and bob on b in lobby. a waits
// 5 s for the fates of signals (AckWait and HeldWait): those b keeps
// reach it well within that.
func smallOutboxOnB(t *testing.T, bh hub.Config) (a, b *testNode, alice, bob *client) {
	urls := natstest.Start(t).ClientURL()
	acfg, bcfg := fastConfig(), fastConfig()
	acfg.AckWait, acfg.HeldWait, bcfg.Outbox = 5*time.Second, 5*time.Second, 20
	a = startNode(t, "a", urls, acfg, hub.Config{})
	b = startNode(t, "b", urls, bcfg, bh)
	alice, bob = inLobby(a, b)
	return a, b, alice, bob
}

// fatesBounded waits for tn to queue or drop an ack or a notice (what) for
// node of each of n signals; it fails the test if tn's outbox holds more
// than twice its limit, and returns how many tn dropped.
func fatesBounded(t *testing.T, tn *testNode, node string, n int, what string) (dropped int) {
	t.Helper()
	var kept int
	eventually(t, tn.name+" to queue or drop the "+what+" of every signal", func() bool {
		kept, dropped = fatesQueued(tn, node), fatesDropped(tn)
		return kept+dropped == n
	})
	if count, limit := outboxCount(tn), tn.node.cfg.Outbox; kept > 2*limit || count > 2*limit {
		t.Fatalf("%s's outbox holds %d %s, %d messages in all; its limit is %d (twice for %s)", tn.name, kept, what, count, limit, what)
	}
	return dropped
}

// fatesQueued returns how many acks and delivered notices tn's outbox
// holds for node, queued or in the batch being published.
func fatesQueued(tn *testNode, node string) int {
	o := tn.node.out
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.acks[node]) + len(o.flying.acks[node]) + len(o.notes[node]) + len(o.flying.notes[node])
}

func outboxCount(tn *testNode) int {
	tn.node.out.mu.Lock()
	defer tn.node.out.mu.Unlock()
	return tn.node.out.count
}

func fatesDropped(tn *testNode) int { return int(testutil.ToFloat64(tn.node.stats.fatesDropped)) }
