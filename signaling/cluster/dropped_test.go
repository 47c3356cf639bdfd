package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// TestQueuedThenDroppedIsReported: a signal from another node's sender
// that was queued on a live connection (acked "delivered" to its node,
// which forgot it) and then never written (the socket dropped, the
// session expired) is reported to its sender by the hub that dropped it;
// only a held one goes to its node (Delivery.Undelivered).
func TestQueuedThenDroppedIsReported(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{ResumeWindow: 300 * time.Millisecond, SendQueue: 8, AbsentQueue: 8})

	// A server for b whose sockets have tiny send buffers.
	up := websocket.Upgrader{Subprotocols: proto.Subprotocols, CheckOrigin: func(*http.Request) bool { return true }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		if tc, ok := ws.NetConn().(*net.TCPConn); ok {
			_ = tc.SetWriteBuffer(1)
		}
		q := r.URL.Query()
		_ = b.hub.Accept(ws.NetConn(), hub.Identity{User: q.Get("user"), Role: proto.RoleUser}, hub.ConnOptions{})
	}))
	defer srv.Close()
	d := websocket.Dialer{Subprotocols: proto.Subprotocols, HandshakeTimeout: wait,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				_ = c.(*net.TCPConn).SetReadBuffer(1)
			}
			return c, err
		}}
	bws, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws?user=bob", nil)
	if err != nil {
		t.Fatal(err)
	}
	readUntil := func(typ string) *proto.Message {
		for {
			_ = bws.SetReadDeadline(time.Now().Add(wait))
			_, raw, err := bws.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			var m proto.Message
			_ = json.Unmarshal(raw, &m)
			if m.Type == typ {
				return &m
			}
		}
	}
	var bw proto.Welcome
	_ = json.Unmarshal(readUntil(proto.TypeWelcome).Data, &bw)
	bobPeer := bw.Peer
	jb, _ := json.Marshal(proto.Message{Type: proto.TypeJoin, ID: "j", Room: "lobby"})
	_ = bws.WriteMessage(websocket.TextMessage, jb)
	readUntil(proto.TypeJoined)

	carol := b.dial("user=carol") // a reading peer on b, for barriers
	carol.join("lobby")
	eventually(t, "a to know bob and carol in lobby", func() bool { return a.hub.RoomMembers("lobby") == 2 })
	alice := a.dial("user=alice")
	alice.join("lobby")

	barrier := func(n int) {
		id := fmt.Sprint("barrier", n)
		alice.signal(carol.peer(), id, `{"b":1}`)
		carol.await(proto.TypeSignal, func(m *proto.Message) bool { return m.From == alice.peer() })
		carol.signal(alice.peer(), id, `{"b":2}`)
	}

	alice.signal(bobPeer, "big", `{"sdp":"`+strings.Repeat("x", 60000)+`"}`)
	pad := strings.Repeat("x", 1000)
	refused := map[string]bool{}
	last := -1
	next := 0
	for round := 0; ; round++ {
		if round == 15 {
			t.Fatal("bob's queue never filled")
		}
		for i := next; i < next+10; i++ {
			alice.signal(bobPeer, fmt.Sprint(i), `{"sdp":"`+pad+`"}`)
		}
		barrier(round)
		for m := alice.next(); !(m.Type == proto.TypeSignal && m.From == carol.peer()); m = alice.next() {
			if m.Type == proto.TypeError {
				refused[m.Ref] = true
			}
		}
		nref := 0
		for i := next; i < next+10; i++ {
			if refused[fmt.Sprint(i)] {
				nref++
			} else {
				last = i
			}
		}
		next += 10
		if nref == 10 && last >= 0 {
			break
		}
	}
	lastID := fmt.Sprint(last)
	t.Logf("signal %s was accepted into bob's queue (queued on a live connection)", lastID)

	_ = bws.NetConn().Close() // bob's socket drops; his session waits 300 ms, then ends
	eventually(t, "bob's session to end on b", func() bool { return !b.hub.IsLocal(bobPeer) })
	deadline := time.After(3 * fastConfig().AckWait)
	for {
		select {
		case m := <-alice.msgs:
			if m.Type == proto.TypeError && m.Ref == lastID {
				t.Logf("alice was told: %s", m.Data)
				return
			}
		case <-deadline:
			t.Fatalf("signal %s, queued for bob and never written, was never reported to alice", lastID)
		}
	}
}

// TestCloseSendsWhatWaits: what waits in the outbox when a node closes
// (the last acks and hand-ons of a drain) is published, not dropped with
// its publisher. The publisher is stopped first, as Close's cancel can
// stop it before its next run; an ack then waits, as one would.
func TestCloseSendsWhatWaits(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	sub := listen(t, urls, a.node.subject("node", "elsewhere"))
	a.node.cancel()
	a.node.wg.Wait()
	a.node.out.ack("elsewhere", ack{seq: 7, status: ackDelivered})
	a.stop()
	m, err := sub.NextMsg(wait)
	if err != nil {
		t.Fatalf("the waiting ack was not published: %v", err)
	}
	if acks, err := decodeAcks(m.Data); err != nil || len(acks) != 1 || acks[0].seq != 7 {
		t.Fatalf("published %v (%v), want the ack of 7", acks, err)
	}
}

// TestCloseWaitsForHandlers: a delivery whose handler is running when the
// node closes is acked to its sender's node; Close used to publish what
// waited while the handler went on, and the ack it queued after that was
// never sent (its sender heard "not delivered" for a delivered signal).
func TestCloseWaitsForHandlers(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{})
	alice, bob := inLobby(a, b)
	acks := listen(t, urls, b.node.subject("node", "b"))

	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func(m *nats.Msg) {
		if len(m.Data) > 0 && (m.Data[0] == opDeliver || m.Data[0] == opNumbered) {
			once.Do(func() { close(entered); <-release })
		}
	}
	a.node.testHookHandle.Store(&hook)
	bob.signal(alice.peer(), "s1", `{"sdp":"x"}`)
	select {
	case <-entered:
	case <-time.After(wait):
		t.Fatal("the signal never reached node a")
	}
	closed := make(chan struct{})
	go func() { a.node.Close(); close(closed) }()
	eventually(t, "Close to wait for the handler, or to return", func() bool {
		select {
		case <-closed:
			return true
		default:
		}
		if a.node.handling.TryRLock() {
			a.node.handling.RUnlock()
			return false
		}
		return true // a writer, Close, waits for the handler
	})
	close(release)
	select {
	case <-closed:
	case <-time.After(wait):
		t.Fatal("Close did not return once the handler ended")
	}
	for {
		m, err := acks.NextMsg(wait)
		if err != nil {
			t.Fatalf("no ack for the signal whose handler ran during Close: %v", err)
		}
		if len(m.Data) == 0 || m.Data[0] != opAck {
			continue
		}
		if as, err := decodeAcks(m.Data); err != nil || len(as) != 1 || as[0].status != ackDelivered {
			t.Fatalf("ack %v (%v), want one, delivered", as, err)
		}
		break
	}
	if a.node.out.publish(b.node.subject("node", "b"), []byte{opAck}) {
		t.Fatal("the outbox of a closed node took a message it will never send")
	}
}
