package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/signaling/hub"
)

// A node that removes a dead node's sessions (one KV request each, seconds
// for a big node) keeps beating: a gap longer than DeadAfter would make
// every other node take it for gone too (its signals failed, its sessions
// orphaned), while the cluster is recovering from the first death.
func TestOrphanRemovalKeepsHeartbeats(t *testing.T) {
	const orphans = 3000
	urls := natstest.Start(t).ClientURL()
	cfg := fastConfig()
	obs := natstest.Connect(t, urls)
	js, err := jetstream.New(obs)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateOrUpdateKeyValue(context.Background(), jetstream.KeyValueConfig{
		Bucket: "khadga-sessions", Description: "khadga: the sessions of every node (peer id -> state)",
		History: 1, Replicas: 1, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	// A node "x" that held many sessions and died before a started.
	for i := range orphans {
		r := record{User: fmt.Sprint("u", i), Role: "user", Node: "x", Epoch: 1, Ver: 1}
		b, _ := json.Marshal(r)
		if _, err := kv.Put(context.Background(), fmt.Sprintf("p%05d", i), b); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var beats []time.Time
	sub, err := obs.Subscribe("khadga.hb", func(m *nats.Msg) {
		var hb heartbeat
		if json.Unmarshal(m.Data, &hb) == nil && hb.Node == "a" {
			mu.Lock()
			beats = append(beats, time.Now())
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	a := startNode(t, "a", urls, cfg, hub.Config{})
	if got := a.hub.Stats().Remote; got != orphans {
		t.Fatalf("a loaded %d of x's sessions", got)
	}
	eventually(t, "x's sessions removed", func() bool { return a.hub.Stats().Remote == 0 })
	// a few more beats after the removal
	mu.Lock()
	n := len(beats)
	mu.Unlock()
	eventually(t, "two more beats", func() bool { mu.Lock(); defer mu.Unlock(); return len(beats) >= n+2 })
	mu.Lock()
	defer mu.Unlock()
	var worst time.Duration
	for i := 1; i < len(beats); i++ {
		worst = max(worst, beats[i].Sub(beats[i-1]))
	}
	t.Logf("heartbeat %v, DeadAfter %v, longest gap between a's beats: %v", cfg.Heartbeat, cfg.DeadAfter, worst)
	if worst > cfg.DeadAfter {
		t.Fatalf("node a went %v without a heartbeat while removing a dead node's %d sessions (DeadAfter %v): the others take it for gone", worst, orphans, cfg.DeadAfter)
	}
}

// A node cut off from NATS for longer than DeadAfter+OrphanGrace takes the
// others for gone and removes their sessions (its KV removals fail: a
// production node's connection buffers nothing while it is down). Once
// NATS is back, it knows them again: it forgot their states when it
// removed them, and the watch, restarted on reconnecting, brings the same
// states back (before, their stamps were not newer than what it had kept,
// and bob stayed missing on a, offline and out of lobby, for good).
func TestPartitionedNodeRelearnsOtherNodesSessions(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	rec := &warnings{info: true}
	cfg := fastConfig()
	cfg.Logger = slog.New(rec)
	a, p, nc := startNodeBehindProxy(t, "a", urls, cfg, hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{})
	alice, bob := inLobby(a, b)
	if got := a.hub.RoomMembers("lobby"); got != 2 {
		t.Fatalf("a sees %d in lobby", got)
	}
	p.Cut()
	eventually(t, "a to remove b's sessions, and fail to remove them from the bucket", func() bool {
		return rec.has("sessions of a gone node removed")
	})
	eventually(t, "b to remove a's sessions", func() bool { return b.hub.Stats().Remote == 0 })
	p.Up()
	eventually(t, "a to reconnect", func() bool { return nc.IsConnected() })
	// In lobby too: hub.Apply counts a proxy before it joins its rooms,
	// and bob's signal in between is refused as between peers who share
	// no room.
	eventually(t, "b to know alice again, in lobby", func() bool {
		return b.hub.Stats().Remote == 1 && b.hub.RoomMembers("lobby") == 2
	})
	eventually(t, "a to know bob again, in lobby", func() bool {
		return a.hub.Stats().Remote == 1 && a.hub.RoomMembers("lobby") == 2
	})
	bob.signal(alice.peer(), "s1", `{}`)
	alice.expectSignal(bob.peer())
	alice.signal(bob.peer(), "s2", `{}`)
	bob.expectSignal(alice.peer())
}

// A node that removed another's sessions as gone, whose first word from
// that node again is a session's state rather than a heartbeat (a state
// that was on its way, or the node back and publishing before its first
// beat), reads the directory again (liveness.saw): the state resets the
// node's "cleaned" mark, so its heartbeats, which would have done it,
// later find nothing to do, and the sessions that did not change since
// (carol's, idle) would stay missing here for good (without the re-read
// in saw, this test times out waiting for carol).
//
// Node a takes b for gone as check does, and removes b's sessions as
// removeOrphans does, with its KV removals failing (a node on the
// minority side of a split NATS cluster): the directory keeps them, and b,
// which sees no removal, writes nothing again. a handles none of b's
// heartbeats meanwhile (its heartbeat handler is held), and never takes b
// for gone on its own (DeadAfter far beyond the test).
func TestStateBeforeHeartbeatRereadsDirectory(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	cfg := fastConfig()
	cfg.DeadAfter = 10 * wait
	a := startNode(t, "a", urls, cfg, hub.Config{})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{})
	alice, bob := inLobby(a, b)
	carol := b.dial("user=carol")
	carol.join("lobby")
	alice.expectPeerJoined(carol.peer())
	// a must have seen the newest states of bob and carol in its KV
	// watch too: one seen only after the removal below would bring them
	// back without any re-read.
	eventually(t, "a's watch to show bob's and carol's newest states", func() bool {
		a.node.dir.imu.Lock()
		defer a.node.dir.imu.Unlock()
		for _, p := range []string{bob.peer(), carol.peer()} {
			e := a.node.dir.byPeer[p]
			if e == nil || e.applied == (stamp{}) || e.kv != e.applied {
				return false
			}
		}
		return true
	})

	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { close(release) }) // before the nodes stop: Close waits for handlers
	hbSubject := a.node.subject("hb")
	hook := func(m *nats.Msg) {
		if m.Subject == hbSubject {
			once.Do(func() { close(entered); <-release })
		}
	}
	a.node.testHookHandle.Store(&hook)
	select {
	case <-entered: // no heartbeat is being handled at a, and none will be
	case <-time.After(wait):
		t.Fatal("no heartbeat reached node a")
	}

	l := a.node.live
	l.mu.Lock()
	st := l.nodes["b"]
	st.gone, st.cleaned = time.Now(), true
	l.mu.Unlock()
	failed, cancel := context.WithCancel(context.Background())
	cancel() // every KV removal fails
	l.removeOrphans(failed, "b")
	if got := a.hub.RoomMembers("lobby"); got != 1 {
		t.Fatalf("a sees %d in lobby after removing b's sessions, want 1", got)
	}
	js, err := jetstream.New(natstest.Connect(t, urls))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), "khadga-sessions")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(context.Background(), carol.peer()); err != nil {
		t.Fatalf("carol's directory entry: %v; the test needs it kept", err)
	}

	// bob's new state reaches a before any heartbeat of b.
	bob.join("elsewhere")
	eventually(t, "a to know carol again, without a heartbeat of b", func() bool {
		return a.dirNode(carol.peer()) == "b" && a.hub.RoomMembers("lobby") == 3
	})
	l.mu.Lock()
	cleaned := st.cleaned
	l.mu.Unlock()
	if cleaned {
		t.Fatal("b is still marked cleaned at a after a state of its came")
	}
}

// TestResumeWindowMismatchIsLogged: nodes say their resume window in their
// heartbeats, and a node whose window differs from another's says so in
// its log, once, naming the node.
func TestResumeWindowMismatchIsLogged(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	rec := &warnings{}
	cfg := fastConfig()
	cfg.Logger = slog.New(rec)
	a := startNode(t, "a", urls, cfg, hub.Config{ResumeWindow: 30 * time.Second})
	startNode(t, "b", urls, fastConfig(), hub.Config{ResumeWindow: 30 * time.Second})
	startNode(t, "c", urls, fastConfig(), hub.Config{ResumeWindow: 5 * time.Second})
	eventually(t, "a to hear b's and c's windows", func() bool {
		a.node.live.mu.Lock()
		defer a.node.live.mu.Unlock()
		b, c := a.node.live.nodes["b"], a.node.live.nodes["c"]
		return b != nil && c != nil && b.window == 30*time.Second && c.window == 5*time.Second
	})
	// Two heartbeats of c's later, still one warning, for c only.
	a.node.live.mu.Lock()
	first := a.node.live.nodes["c"].seen
	a.node.live.mu.Unlock()
	eventually(t, "two more of c's heartbeats", func() bool {
		a.node.live.mu.Lock()
		defer a.node.live.mu.Unlock()
		return a.node.live.nodes["c"].seen.Sub(first) >= 2*fastConfig().Heartbeat*3/4
	})
	got := rec.all()
	if len(got) != 1 || !strings.Contains(got[0], "different resume window") || !strings.Contains(got[0], "peer_node=c") {
		t.Fatalf("warnings %q, want one about c's resume window", got)
	}
}

// warnings is a slog.Handler that keeps the warnings it is given, and the
// informational messages too if info is set.
type warnings struct {
	info bool
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || w.info && l >= slog.LevelInfo
}

// has reports whether a message that contains s was logged.
func (w *warnings) has(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.msgs {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	w.mu.Lock()
	w.msgs = append(w.msgs, b.String())
	w.mu.Unlock()
	return nil
}

func (w *warnings) count() int { w.mu.Lock(); defer w.mu.Unlock(); return len(w.msgs) }

func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.msgs...)
}
