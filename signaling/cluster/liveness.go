package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// liveness tells which nodes are alive. Every node says so on the
// heartbeat subject every Heartbeat; one not heard for DeadAfter is gone:
// the signals sent to it are reported to their senders at once, and after
// OrphanGrace (time for its clients to resume on other nodes) its sessions
// that did not move are removed, and shown offline, everywhere. A node that
// drains says so, and is not taken for gone while its clients move; one
// that leaves says goodbye, and is gone at once (its sessions have ended or
// moved by then; what is still attributed to it is removed after
// byeGrace).
// byeGrace is how long the sessions still attributed to a node that said
// goodbye wait before they are removed: the new states of those that
// moved are on their way from their new nodes.
const byeGrace = 2 * time.Second

// forgetAfter is how long a node found gone, whose sessions were removed
// here, is remembered since it was last heard from; then it is forgotten.
// Node ids are never reused (a restart makes a new one), and anyone who
// can publish on the heartbeat subject can name any id: remembered for
// good, they would fill the memory over months of restarts, or at once.
// Forgetting one changes nothing for a session: a node is forgotten only
// once its sessions were removed from the directory and the hub here
// (check), and no signal goes to a node taken for gone. One that speaks
// again later (a state of one of its sessions, a heartbeat) is a new node
// to this one (docs/cluster.md, "Nodes this node remembers"). Far past
// DeadAfter and OrphanGrace (seconds); a variable so that tests can
// shorten it.
var forgetAfter = time.Hour

// maxNodes caps how many other nodes a node remembers. At the cap, a new
// id takes the place of the node forgotten soonest among those whose
// sessions were removed; with none such (a flood of heartbeats from ids
// all heard within DeadAfter and OrphanGrace), it is refused, counted and
// logged: a real node refused so is not taken for gone if it dies, and
// its sessions known here are not removed as a dead node's are. A
// variable so that tests can lower it.
var maxNodes = 1024

type liveness struct {
	n          *Node
	mu         sync.Mutex
	nodes      map[string]*nodeState
	draining   bool
	reconnects uint64 // the NATS connection's, at the last check
	// full is set while ids are refused at maxNodes, so that the log
	// says so once, and again once it is not full any more.
	full bool
}

type nodeState struct {
	seen     time.Time // last heartbeat, or when its first session was seen
	gone     time.Time // when it was found gone; zero while alive
	cleaned  bool      // its sessions were removed
	draining bool
	// window is the resume window it said it has (0: it did not say,
	// an older node), told once to the log if it differs from ours.
	window time.Duration
	// numbered: it said it takes numbered signals.
	numbered bool
}

// heartbeat is what a node says on the heartbeat subject.
type heartbeat struct {
	Node     string `json:"node"`
	Draining bool   `json:"draining,omitempty"`
	Bye      bool   `json:"bye,omitempty"`
	// WindowMS is the node's resume window: a signal held for an absent
	// session is tracked by its sender's node for the holder's window,
	// so nodes must agree on it.
	WindowMS int64 `json:"resume_window_ms,omitempty"`
	// Numbered says the node takes numbered signals (opNumbered).
	Numbered bool `json:"numbered,omitempty"`
}

func newLiveness(n *Node) *liveness { return &liveness{n: n, nodes: map[string]*nodeState{}} }

func (l *liveness) onHeartbeat(m *nats.Msg) {
	var hb heartbeat
	if json.Unmarshal(m.Data, &hb) != nil || !validToken(hb.Node) {
		l.n.stats.badMessages.Inc()
		return
	}
	if hb.Node == l.n.id {
		return
	}
	l.mu.Lock()
	st := l.state(hb.Node)
	if st == nil {
		l.mu.Unlock()
		return
	}
	if hb.Bye {
		if st.gone.IsZero() {
			// Its sessions have ended or moved, but the new states of
			// those that moved come from their new nodes, and may come
			// after this: removing them now would show them leave and
			// join again. A short grace, not the whole OrphanGrace.
			st.gone = time.Now().Add(-l.n.cfg.OrphanGrace + min(byeGrace, l.n.cfg.OrphanGrace))
		}
		l.mu.Unlock()
		return
	}
	st.seen, st.draining, st.numbered = time.Now(), hb.Draining, hb.Numbered
	l.compareWindow(hb.Node, st, time.Duration(hb.WindowMS)*time.Millisecond)
	cleaned := st.cleaned
	if !st.gone.IsZero() {
		l.n.log.Info("cluster: a node taken for gone is back", slog.String("peer_node", hb.Node))
		st.gone, st.cleaned = time.Time{}, false
	}
	l.mu.Unlock()
	if cleaned {
		// Its sessions were removed here, and forgotten (dropNode): read
		// them again. After a cut between this node and NATS the restart
		// of the watch on reconnecting does that too, but a node can also
		// be cut off from this one with both connections up (a NATS
		// cluster that split), and then nothing else would.
		l.n.dir.rewatch()
		l.n.dir.resend(hb.Node)
	}
}

// compareWindow warns, once per node and window, when another node's
// resume window differs from this one's: a signal held for an absent
// session on the node with the longer window can reach it after its
// sender, told by the node with the shorter one, heard "not delivered".
func (l *liveness) compareWindow(node string, st *nodeState, window time.Duration) {
	ours := l.n.hub.ResumeWindow()
	if window == 0 || window == st.window {
		return
	}
	st.window = window
	if window != ours {
		l.n.log.Warn("cluster: another node has a different resume window; give every node the same --resume-window",
			slog.String("peer_node", node), slog.Duration("its", window), slog.Duration("ours", ours))
	}
}

// saw notes a node that holds a session, so that a node that dies before
// its first heartbeat is found gone too. A node whose sessions were
// removed as gone is watched afresh: a session of it that comes later (a
// state that was on its way, or the watch read again) is removed in turn
// if the node stays silent.
func (l *liveness) saw(node string) {
	if node == l.n.id {
		return
	}
	l.mu.Lock()
	st := l.state(node)
	if st == nil {
		l.mu.Unlock()
		return
	}
	cleaned := st.cleaned
	if cleaned {
		st.seen, st.gone, st.cleaned = time.Now(), time.Time{}, false
	}
	l.mu.Unlock()
	if cleaned {
		// Its heartbeat, which would have read its sessions again
		// (onHeartbeat), now finds it not cleaned: read them here.
		l.n.dir.rewatch()
		l.n.dir.resend(node)
	}
}

// state returns node's state, made now if node is new; nil if node is new
// and there is no room for it (maxNodes). l.mu is held.
func (l *liveness) state(node string) *nodeState {
	st := l.nodes[node]
	if st != nil {
		return st
	}
	if len(l.nodes) >= maxNodes && !l.forgetOneLocked() {
		l.n.stats.nodesRefused.Inc()
		if !l.full {
			l.full = true
			l.n.log.Warn("cluster: too many node ids; ids not heard before are ignored until some are forgotten",
				slog.Int("max", maxNodes), slog.String("refused", node))
		}
		return nil
	}
	st = &nodeState{seen: time.Now()}
	l.nodes[node] = st
	return st
}

// forgetOneLocked forgets the node, among those whose sessions were
// removed, heard from longest ago; it reports false if there is none.
// l.mu is held.
func (l *liveness) forgetOneLocked() bool {
	oldest := ""
	for node, st := range l.nodes {
		if st.cleaned && (oldest == "" || st.seen.Before(l.nodes[oldest].seen)) {
			oldest = node
		}
	}
	if oldest == "" {
		return false
	}
	delete(l.nodes, oldest)
	return true
}

// listening lists the other nodes that may be listening: those alive,
// and those taken for gone whose sessions this node has not removed yet
// (within OrphanGrace). A node is taken for gone on silence alone, and a
// busy one (its heartbeats late, or this node late to read them) is often
// back a moment later, never having missed a thing, with the proxies of
// this node's sessions. The states of those sessions, and above all their
// ends, must still reach it: a Gone it misses is never sent again, and the
// directory does not always carry it instead (an entry never written
// before its session ended is never removed, and a removal that comes
// after a newer state sent directly is taken for that of an older node's
// entry: directory.applyDeleted). Once this node has removed its
// sessions, nothing goes to it until it is heard from again; then it is
// sent what it missed (directory.resend).
func (l *liveness) listening() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.nodes))
	for node, st := range l.nodes {
		if !st.cleaned {
			out = append(out, node)
		}
	}
	return out
}

// numbered reports whether node said it takes numbered signals.
func (l *liveness) numbered(node string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.nodes[node]
	return st != nil && st.numbered
}

// isGone reports whether node was found gone.
func (l *liveness) isGone(node string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.nodes[node]
	return st != nil && !st.gone.IsZero()
}

func (l *liveness) setDraining() {
	l.mu.Lock()
	l.draining = true
	l.mu.Unlock()
	l.beat(false)
}

// bye tells the others this node is leaving for good. It waits a second
// at most for NATS to take the goodbye: the others find the node gone
// without it, and a shutdown must not wait on a link that takes nothing.
func (l *liveness) bye() {
	l.beat(true)
	_ = l.n.nc.FlushTimeout(time.Second)
}

func (l *liveness) beat(bye bool) {
	l.mu.Lock()
	hb := heartbeat{Node: l.n.id, Draining: l.draining, Bye: bye, WindowMS: l.n.hub.ResumeWindow().Milliseconds(), Numbered: true}
	l.mu.Unlock()
	b, _ := json.Marshal(hb)
	if err := l.n.nc.Publish(l.n.subject("hb"), b); err != nil {
		l.n.stats.publishErrors.Inc()
	}
}

// beats sends this node's heartbeat until ctx ends. Nothing else runs on
// this goroutine: a beat that waited behind a slow check or KV request
// could come later than DeadAfter, and the others would take this healthy
// node for gone.
func (l *liveness) beats(ctx context.Context) {
	l.beat(false)
	every(ctx, l.n.cfg.Heartbeat, func(time.Time) { l.beat(false) })
}

// checks looks for nodes gone until ctx ends.
func (l *liveness) checks(ctx context.Context) {
	every(ctx, l.n.cfg.Heartbeat/4, l.check)
}

// check finds nodes gone, and removes the sessions of those gone for
// longer than OrphanGrace.
func (l *liveness) check(now time.Time) {
	if r := l.n.nc.Stats().Reconnects; r != l.reconnects {
		// NATS came back: write this node's sessions again, as entries may
		// have been lost with a server, and tell the others again of those
		// that ended lately, whose ends may have gone nowhere.
		l.reconnects = r
		l.n.dir.rewatch()
		for _, st := range l.n.hub.LocalStates() {
			l.n.Publish(st)
		}
		l.n.endsUnsent.Store(true)
	}
	if l.n.endsUnsent.Swap(false) && !l.n.dir.resendEnds() {
		l.n.endsUnsent.Store(true) // the outbox is still full: next time
	}
	var gone, orphaned []string
	l.mu.Lock()
	alive, forgot := 0, 0
	for node, st := range l.nodes {
		switch {
		case st.gone.IsZero() && now.Sub(st.seen) > l.n.cfg.DeadAfter:
			st.gone = now
			gone = append(gone, node)
		case !st.gone.IsZero() && !st.cleaned && now.Sub(st.gone) >= l.n.cfg.OrphanGrace:
			st.cleaned = true
			orphaned = append(orphaned, node)
		case st.cleaned && now.Sub(st.seen) >= forgetAfter:
			delete(l.nodes, node) // nothing here names it any more: forgetAfter
			forgot++
		case st.gone.IsZero():
			alive++
		}
	}
	if l.full && len(l.nodes) < maxNodes {
		l.full = false
		l.n.log.Info("cluster: node ids are taken again", slog.Int("known", len(l.nodes)))
	}
	l.mu.Unlock()
	if forgot > 0 {
		l.n.log.Debug("cluster: nodes gone long ago forgotten", slog.Int("nodes", forgot))
	}
	l.n.stats.nodes.Set(float64(alive + 1))
	for _, node := range gone {
		l.n.stats.nodeDeaths.Inc()
		l.n.log.Warn("cluster: a node is gone; its sessions wait for their clients to resume elsewhere",
			slog.String("peer_node", node), slog.Duration("grace", l.n.cfg.OrphanGrace))
		l.n.track.failNode(node)
	}
	for _, node := range orphaned {
		// One KV request per session: a big node's take seconds, during
		// which the checks must go on.
		l.n.run(func(ctx context.Context) { l.removeOrphans(ctx, node) })
	}
}

// removeOrphans removes the sessions of a gone node that did not move:
// here (this node's members see them leave, presence shows them offline)
// and from the directory (every node tries; the revision lets one win).
// This node forgets their states, so that if the node was only cut off it
// learns them again (liveness.onHeartbeat, dropNode). Both under the
// directory's applyMu, so that no state is applied between the two.
func (l *liveness) removeOrphans(ctx context.Context, node string) {
	l.n.dir.applyMu.Lock()
	orphans := l.n.dir.dropNode(node)
	n := l.n.hub.RemoveNode(node)
	l.n.dir.applyMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for peer, rev := range orphans {
		l.n.ord.forget(peer)
		if err := l.n.remove(ctx, peer, jetstream.LastRevision(rev)); err != nil && !isConflict(err) {
			l.n.stats.kvErrors.Inc()
		}
	}
	l.n.log.Info("cluster: sessions of a gone node removed", slog.String("peer_node", node), slog.Int("sessions", n))
}
