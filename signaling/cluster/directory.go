package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// directory is the cluster's view of every session: who it is, which node
// holds it, its rooms and its resume token's hash. The node that holds a
// session is the only one that writes its state, and it writes it two
// ways:
//
//   - at once to every other node's subject, in the same stream as the
//     signals it sends there, so that a node always learns of a join before
//     it gets a signal that the joiner sent in answer to joined (NATS keeps
//     one publisher's messages in order on one subscription);
//   - to the session's entry in a JetStream KV bucket (key: peer id), which
//     every node watches: what a node missed (it started later, its NATS
//     server failed) it learns there, and a resume on any node finds the
//     session there by its token.
//
// Both carry a stamp, (epoch, version): the version grows with every
// change, and the epoch with every move to another node (a claim), so that
// whatever order the two ways deliver in, a node applies a session's state
// only if it is newer than what it has. What a node learns becomes proxies
// in its hub (hub.Apply, hub.Remove).
//
// KV writes are queued and coalesced per session (the latest state wins),
// so that the hub's Publish never waits on NATS, and each is a
// compare-and-swap on the entry's revision: a node that lost a session to
// another may still have a write queued, and that write then fails and
// yields to the higher epoch instead of taking the session back.
type directory struct {
	n *Node

	mu      sync.Mutex
	pending map[string]*queuedState // peer -> what to write
	order   []string
	wake    chan struct{}
	idle    chan struct{} // closed when pending is empty, for flush

	// The watch: one at a time; applying is serialised across restarts
	// and with the direct path.
	wmu     sync.Mutex
	watcher jetstream.KeyWatcher
	applyMu sync.Mutex

	// What this node knows of every session.
	imu    sync.Mutex
	byPeer map[string]*entry
	byTok  map[string]string // token hash -> peer (other nodes' sessions)
	// byUser lists the other nodes' sessions (not ended) of each user,
	// for Config.MaxConnsPerUser across the cluster (elsewhere); index
	// keeps it.
	byUser map[string]map[string]struct{}
	// tokNews is closed, and replaced, whenever byTok learns a token
	// (waitToken).
	tokNews chan struct{}
	// tombs lists the tombstones (entries of ended sessions) oldest
	// first, for sweep to remove once they are older than tombstoneTTL.
	tombs []tomb
}

// tomb is a tombstone in directory.tombs: it is still there if its entry
// is gone with the same goneAt (a newer state revives an entry).
type tomb struct {
	peer string
	at   time.Time
}

// stamp orders the states of one session.
type stamp struct{ Epoch, Ver uint64 }

func (a stamp) after(b stamp) bool {
	return a.Epoch > b.Epoch || a.Epoch == b.Epoch && a.Ver > b.Ver
}

type entry struct {
	st      hub.SessionState
	applied stamp  // the newest state applied, from either way
	kv      stamp  // the newest state seen in the KV watch
	rev     uint64 // the entry's KV revision, for compare-and-swap
	// gone marks a tombstone: the session ended. It is kept, with its
	// stamp, so that an older state that comes late (the other way, or a
	// Publish that raced with the end) does not bring the session back,
	// and removed tombstoneTTL after goneAt. goneAt is zero while the
	// KV removal of a session of this node is still to be written: it
	// needs the entry's revision.
	gone   bool
	goneAt time.Time
}

// tombstoneTTL is how long the directory keeps an ended session's entry
// (Config.tombstoneTTL): far longer than the two ways of a state (direct
// and KV watch) can be apart, short enough that a busy node's ended
// sessions cost little.
const tombstoneTTL = time.Minute

// queuedState is a KV write waiting: a state, or a removal (st nil).
type queuedState struct {
	st *hub.SessionState
	at stamp
}

// record is a session as the directory stores and sends it (JSON).
type record struct {
	User   string   `json:"user"`
	Role   string   `json:"role"`
	Node   string   `json:"node"`
	Rooms  []string `json:"rooms,omitempty"`
	Grants []string `json:"grants,omitempty"`
	Login  string   `json:"login,omitempty"`
	Key    string   `json:"key,omitempty"`
	Token  []byte   `json:"tok,omitempty"`
	// Away is when the session's socket went away (unix nanoseconds),
	// while it waits for a resume. Nodes of older versions leave it out,
	// and their sessions count as connected.
	Away  int64  `json:"away,omitempty"`
	Epoch uint64 `json:"epoch"`
	Ver   uint64 `json:"ver"`
}

func toRecord(st *hub.SessionState, at stamp) record {
	r := record{User: st.Member.User, Role: st.Member.Role, Node: st.Node, Rooms: st.Rooms, Grants: st.Grants,
		Login: st.Login, Key: st.KeyID, Token: st.TokenHash, Epoch: at.Epoch, Ver: at.Ver}
	if !st.Away.IsZero() {
		r.Away = st.Away.UnixNano()
	}
	return r
}

func (r record) state(peer string) hub.SessionState {
	st := hub.SessionState{Member: proto.Member{Peer: peer, User: r.User, Role: r.Role}, Node: r.Node,
		Rooms: r.Rooms, Grants: r.Grants, Login: r.Login, KeyID: r.Key, TokenHash: r.Token}
	if r.Away > 0 {
		st.Away = time.Unix(0, r.Away)
	}
	return st
}

// stateMsg is a state sent directly to another node: opState and JSON.
type stateMsg struct {
	Peer   string  `json:"peer"`
	Gone   bool    `json:"gone,omitempty"`
	Record *record `json:"record,omitempty"`
	Epoch  uint64  `json:"epoch"`
	Ver    uint64  `json:"ver"`
}

const opState = 'S'

func newDirectory(n *Node) *directory {
	return &directory{n: n, pending: map[string]*queuedState{}, wake: make(chan struct{}, 1),
		byPeer: map[string]*entry{}, byTok: map[string]string{}, byUser: map[string]map[string]struct{}{},
		tokNews: make(chan struct{})}
}

// buryLocked makes e, peer's entry, a tombstone from now on. d.imu is held.
func (d *directory) buryLocked(peer string, e *entry) {
	if len(e.st.TokenHash) > 0 {
		delete(d.byTok, string(e.st.TokenHash))
	}
	e.gone, e.goneAt = true, time.Now()
	d.tombs = append(d.tombs, tomb{peer: peer, at: e.goneAt})
	d.indexLocked(peer, e)
}

// indexLocked lists peer, whose entry e just changed, under its user in
// byUser if it is another node's session that has not ended, and takes
// it off otherwise. d.imu is held.
func (d *directory) indexLocked(peer string, e *entry) {
	user := e.st.Member.User
	if user == "" {
		return
	}
	peers := d.byUser[user]
	if !e.gone && e.st.Node != "" && e.st.Node != d.n.id {
		if peers == nil {
			peers = map[string]struct{}{}
			d.byUser[user] = peers
		}
		peers[peer] = struct{}{}
		return
	}
	delete(peers, peer)
	if len(peers) == 0 {
		delete(d.byUser, user)
	}
}

// count is how many sessions of user other nodes hold, as far as this
// directory knows.
func (d *directory) count(user string) int {
	d.imu.Lock()
	defer d.imu.Unlock()
	return len(d.byUser[user])
}

// elsewhere returns user's sessions on other nodes, as far as the
// directory knows (Since is zero for those with a connection open), and
// the one that tokenHash names, if it is one of them.
func (d *directory) elsewhere(user string, tokenHash []byte) (all []hub.Waiting, named string) {
	d.imu.Lock()
	defer d.imu.Unlock()
	for peer := range d.byUser[user] {
		e := d.byPeer[peer]
		all = append(all, hub.Waiting{Peer: peer, Node: e.st.Node, Since: e.st.Away})
	}
	if peer, ok := d.byTok[string(tokenHash)]; ok && len(tokenHash) > 0 {
		if _, mine := d.byUser[user][peer]; mine {
			named = peer
		}
	}
	return all, named
}

// sweep removes tombstones older than the TTL, until ctx ends.
func (d *directory) sweep(ctx context.Context) {
	every(ctx, max(d.n.cfg.tombstoneTTL/4, 10*time.Millisecond), d.sweepOnce)
}

func (d *directory) sweepOnce(now time.Time) {
	d.imu.Lock()
	defer d.imu.Unlock()
	i := 0
	for ; i < len(d.tombs) && now.Sub(d.tombs[i].at) >= d.n.cfg.tombstoneTTL; i++ {
		t := d.tombs[i]
		if e := d.byPeer[t.peer]; e != nil && e.gone && e.goneAt.Equal(t.at) {
			delete(d.byPeer, t.peer)
		}
	}
	if i > 0 {
		d.tombs = slices.Clone(d.tombs[i:])
	}
}

// Publish tells the other nodes the state of a local session
// (hub.Delivery).
func (n *Node) Publish(st hub.SessionState) {
	if hook := n.testHookPublish.Load(); hook != nil {
		(*hook)(st)
	}
	st.Node = n.id
	at, ok := n.dir.local(st)
	if !ok {
		// It ended meanwhile: its Gone is out, and must stay the last
		// word. Or it moved to another node, which publishes it now.
		return
	}
	n.dir.queue(st.Member.Peer, &queuedState{st: &st, at: at})
	r := toRecord(&st, at)
	n.sendState(stateMsg{Peer: st.Member.Peer, Record: &r, Epoch: at.Epoch, Ver: at.Ver})
}

// Gone tells the other nodes that a local session ended (hub.Delivery).
func (n *Node) Gone(peer string) {
	n.ord.forget(peer) // its numbering, if it was another node's once (a leaf lock)
	at := n.dir.end(peer)
	n.dir.queue(peer, &queuedState{at: at})
	n.sendState(stateMsg{Peer: peer, Gone: true, Epoch: at.Epoch, Ver: at.Ver})
}

// sendState sends a state to every other node that may be listening,
// also those taken for gone a moment ago (liveness.listening).
func (n *Node) sendState(m stateMsg) {
	b, _ := json.Marshal(m)
	msg := append([]byte{opState}, b...)
	for _, node := range n.live.listening() {
		if !n.out.publish(n.subject("node", node), msg) {
			// The directory write carries a state, and the removal of
			// an entry that was written; but a session whose state and end
			// met in the writer's queue has no entry, and its end only
			// this message: liveness.check sends the ends again.
			if m.Gone {
				n.endsUnsent.Store(true)
			}
			return
		}
	}
}

// resend sends node, heard from again after this node took it for gone
// and removed its sessions, the state of every session of this node and
// the end of every one that ended here lately (its tombstone): nothing
// went to node meanwhile (liveness.listening), and node may have heard
// this node all along (a cut one way only, or this node late to read its
// heartbeats), and kept the proxies of this node's sessions with no reason
// to read the directory again. The stamps make whatever it had already
// harmless. (A session that ended longer ago than tombstoneTTL is not
// sent; node's KV watch has its removal, if its entry was written.)
func (d *directory) resend(node string) {
	for _, msg := range d.own(false) {
		if !d.n.out.publish(d.n.subject("node", node), msg) {
			return
		}
	}
}

// resendEnds sends every node that may be listening the end of every
// session of this node that ended lately (its tombstone), when an end may
// have gone nowhere (Node.endsUnsent): sent while the connection was away
// (nothing is buffered while disconnected), or refused by a full outbox.
// The directory does not carry the end of a session whose entry was never
// written, so a node that did not take this one for gone meanwhile would
// otherwise keep the session online in its rooms for as long as this node
// lives (TestGoneReachesTheOthersAfterACut,
// TestGoneRefusedByAFullOutboxGoesLater). The stamps make the ends it
// heard already harmless. It reports false if the outbox refused one.
func (d *directory) resendEnds() bool {
	msgs := d.own(true)
	for _, node := range d.n.live.listening() {
		for _, msg := range msgs {
			if !d.n.out.publish(d.n.subject("node", node), msg) {
				return false
			}
		}
	}
	return true
}

// own encodes, as direct messages, the state of every session of this
// node and the end of every one that ended lately; with endsOnly, the
// ends alone.
func (d *directory) own(endsOnly bool) [][]byte {
	var msgs [][]byte
	d.imu.Lock()
	defer d.imu.Unlock()
	for peer, e := range d.byPeer {
		if e.st.Node != d.n.id || endsOnly && !e.gone {
			continue
		}
		m := stateMsg{Peer: peer, Gone: e.gone, Epoch: e.applied.Epoch, Ver: e.applied.Ver}
		if !e.gone {
			r := toRecord(&e.st, e.applied)
			m.Record = &r
		}
		b, _ := json.Marshal(m)
		msgs = append(msgs, append([]byte{opState}, b...))
	}
	return msgs
}

// onState applies a state another node sent directly.
func (n *Node) onState(b []byte) error {
	var m stateMsg
	if err := json.Unmarshal(b[1:], &m); err != nil || !validToken(m.Peer) || (!m.Gone && m.Record == nil) {
		return errBadMessage
	}
	at := stamp{m.Epoch, m.Ver}
	n.dir.applyMu.Lock()
	defer n.dir.applyMu.Unlock()
	if m.Gone {
		n.dir.applyGone(m.Peer, at)
		return nil
	}
	if !validToken(m.Record.Node) {
		return errBadMessage
	}
	n.dir.applyState(m.Peer, m.Record.state(m.Peer), at)
	return nil
}

// local records a local session's new state and returns its stamp. The
// entry must say that this node holds the session now: a session claimed
// from a node that died still has that node's state here, and the
// clean-up of the dead node's sessions (dropNode) would remove it.
//
// It refuses (false) a state of a session that has ended: the hub takes a
// session's state and publishes it without a lock, so a revocation or an
// expiry can end the session in between, and its Gone must not be undone
// by the late state. Peer ids are never reused, and an ended session is
// never resumed, so no state can legitimately follow a Gone.
//
// It refuses, for the same reason, a state of a session that another
// node holds now, as far as this directory knows: a claim took it from
// this node (hub.Release) between the hub's taking the state and this
// Publish. The stamp would follow the new node's, in its epoch, and carry
// this node's name: the new node would take it for a move back here and
// let the session go (handOver), and no node would hold it. A session
// that this node takes back later is marked as this node's first
// (claimed).
func (d *directory) local(st hub.SessionState) (stamp, bool) {
	d.imu.Lock()
	defer d.imu.Unlock()
	e := d.entryLocked(st.Member.Peer)
	if e.gone || e.st.Node != "" && e.st.Node != d.n.id {
		return stamp{}, false
	}
	if len(e.st.TokenHash) > 0 {
		delete(d.byTok, string(e.st.TokenHash)) // it lists other nodes' sessions only
	}
	e.st = st
	d.indexLocked(st.Member.Peer, e)
	return d.nextLocked(e), true
}

// end notes that a local session ended and returns the stamp of its end.
// Its entry is a tombstone from then on, whose clock starts when its KV
// removal is written (removed). One step: a Publish of the session that
// raced with its end (local) must either come before the end's stamp or
// find the tombstone, never take a stamp after it.
func (d *directory) end(peer string) stamp {
	d.imu.Lock()
	defer d.imu.Unlock()
	e := d.entryLocked(peer)
	at := d.nextLocked(e)
	e.gone, e.goneAt = true, time.Time{}
	d.indexLocked(peer, e)
	return at
}

func (d *directory) nextLocked(e *entry) stamp {
	e.applied = stamp{max(e.applied.Epoch, 1), e.applied.Ver + 1}
	return e.applied
}

// removed notes that the KV removal of a local session that ended is
// written (or there was nothing to remove): its tombstone's clock starts.
func (d *directory) removed(peer string) {
	d.imu.Lock()
	defer d.imu.Unlock()
	if e := d.byPeer[peer]; e != nil && e.gone && e.goneAt.IsZero() {
		d.buryLocked(peer, e)
	}
}

// claimed raises the epoch of a session this node takes from another, and
// marks it as this node's at once, so that the clean-up of its old node's
// sessions (dropNode), if that node is gone, leaves it alone, and a Publish
// of it is not refused.
func (d *directory) claimed(peer string) {
	// Under applyMu too: a state of the old node's that applyState took
	// as newer a moment before must be through with the hub (Apply, or
	// handOver) before the hub makes the session this node's. Between its
	// taking the state and the hub's, the hub's claim would otherwise make
	// the session local, and applyState then hand it back to the old node
	// (handOver): this node a proxy, its directory saying it holds the
	// session, and the next claim refused.
	d.applyMu.Lock()
	defer d.applyMu.Unlock()
	d.imu.Lock()
	defer d.imu.Unlock()
	e := d.entryLocked(peer)
	e.applied = stamp{max(e.applied.Epoch, e.kv.Epoch) + 1, 0}
	if len(e.st.TokenHash) > 0 {
		delete(d.byTok, string(e.st.TokenHash))
	}
	// A tombstone too: its old node's clean-up may have removed its KV
	// entry since the claim found it.
	e.st.Node, e.gone = d.n.id, false
	d.indexLocked(peer, e)
}

func (d *directory) entryLocked(peer string) *entry {
	e := d.byPeer[peer]
	if e == nil {
		e = &entry{}
		d.byPeer[peer] = e
	}
	return e
}

// dropBlankLocked removes e, peer's entry, if nothing was ever applied to
// it: a state or an end stamped zero, which no node makes (every stamp
// has an epoch of 1 or more) and which is not newer than nothing, made
// one. Kept, it would stay for good: it is no tombstone (sweep), and
// names no node (dropNode). Only a publisher on the cluster's subjects,
// or a write to the directory's bucket, can send one (NATS is trusted,
// docs/cluster.md), but any number of peer ids would each keep one.
// d.imu is held.
func (d *directory) dropBlankLocked(peer string, e *entry) {
	if e.applied == (stamp{}) && !e.gone {
		delete(d.byPeer, peer)
	}
}

// applyState takes a state of another node's session into the hub, if it
// is newer than what this node has. d.applyMu is held.
func (d *directory) applyState(peer string, st hub.SessionState, at stamp) {
	d.imu.Lock()
	e := d.entryLocked(peer)
	newer := at.after(e.applied)
	if newer {
		if len(e.st.TokenHash) > 0 {
			delete(d.byTok, string(e.st.TokenHash))
		}
		e.st, e.applied, e.gone = st, at, false
		d.indexLocked(peer, e)
		if len(st.TokenHash) > 0 && st.Node != d.n.id {
			d.byTok[string(st.TokenHash)] = peer
			close(d.tokNews)
			d.tokNews = make(chan struct{})
		}
	} else {
		d.dropBlankLocked(peer, e)
	}
	d.imu.Unlock()
	if !newer || st.Node == d.n.id {
		return
	}
	// Before the proxy is made: a node whose sessions were removed as
	// gone must be watched again, so that these are removed too if it
	// does not speak up.
	d.n.live.saw(st.Node)
	if d.n.hub.IsLocal(peer) {
		// Another node took a session of this node (its client resumed
		// there) without asking, or before asking: let it go, with what
		// waited for it.
		d.n.handOver(peer, st.Node)
	}
	d.n.hub.Apply(st)
}

// applyGone removes another node's session that ended, if the news is
// newer than what this node has; its entry stays a while as a tombstone.
// d.applyMu is held.
func (d *directory) applyGone(peer string, at stamp) {
	d.imu.Lock()
	e := d.entryLocked(peer)
	newer := at.after(e.applied)
	if newer {
		e.applied = at
		d.buryLocked(peer, e)
	} else {
		d.dropBlankLocked(peer, e)
	}
	d.imu.Unlock()
	if newer && !d.n.hub.IsLocal(peer) {
		d.n.hub.Remove(peer)
		d.n.ord.forget(peer)
	}
}

// queue queues a write of peer's entry, in place of an older one that
// waits (two callers that took their stamps in one order may queue in the
// other).
func (d *directory) queue(peer string, q *queuedState) {
	d.mu.Lock()
	if old, ok := d.pending[peer]; !ok {
		d.order = append(d.order, peer)
	} else if old.at.after(q.at) {
		d.mu.Unlock()
		return
	}
	d.pending[peer] = q
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// write runs the queued writes, until ctx ends. A write that fails stays
// queued and is tried again (NATS may be away for a while).
func (d *directory) write(ctx context.Context) {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-retry.C:
		}
		if failed := d.writeQueued(ctx); failed {
			retry.Reset(500 * time.Millisecond)
		}
	}
}

// writeQueued writes what is queued, in order, and reports whether a write
// failed (it is queued again, unless newer state came meanwhile).
func (d *directory) writeQueued(ctx context.Context) (failed bool) {
	d.mu.Lock()
	order, pending := d.order, d.pending
	d.order, d.pending = nil, map[string]*queuedState{}
	d.mu.Unlock()
	for _, peer := range order {
		q := pending[peer]
		if err := d.put(ctx, peer, q); err != nil {
			failed = true
			d.n.stats.kvErrors.Inc()
			d.n.log.Warn("cluster: directory write failed; will retry", slog.String("peer", peer), slog.Any("err", err))
			d.mu.Lock()
			if _, newer := d.pending[peer]; !newer {
				d.pending[peer] = q
				d.order = append(d.order, peer)
			}
			d.mu.Unlock()
		}
	}
	d.mu.Lock()
	if len(d.pending) == 0 && d.idle != nil {
		close(d.idle)
		d.idle = nil
	}
	d.mu.Unlock()
	return failed
}

// put writes a session's state (or removes it), as a compare-and-swap on
// the last revision this node knows. On a conflict it reads what is there:
// a higher epoch of another node means the session moved on (this node
// lets it go); otherwise it retries on the new revision.
func (d *directory) put(ctx context.Context, peer string, q *queuedState) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	defer func() { d.n.stats.kvLatency.Observe(time.Since(start).Seconds()) }()
	if q.st != nil && d.superseded(peer, q.at) {
		// A state that was queued before its session ended or moved on,
		// and is written after (Publish stamps and queues in two steps,
		// and Gone may run in between, taking its removal out of the
		// queue first; or the writer is behind, and a claim took the
		// session meanwhile). Written now, it would bring the session back
		// into the directory as this node's: after its removal (a
		// conditional write on the revision of a delete succeeds), or over
		// the new node's entry, whose revision this node knows from the
		// watch. Every node that reads it later (a new node, a restarted
		// watch, a node whose tombstone has expired) would take the
		// session for alive here.
		return nil
	}
	for range 4 {
		rev := d.revision(peer)
		var err error
		var next uint64
		switch {
		case q.st == nil && rev == 0:
			d.removed(peer) // never written
			return nil
		case q.st == nil:
			if err = d.n.remove(ctx, peer, jetstream.LastRevision(rev)); err == nil {
				d.removed(peer)
				return nil
			}
		default:
			b, _ := json.Marshal(toRecord(q.st, q.at))
			if rev == 0 {
				next, err = d.n.kv.Create(ctx, peer, b)
			} else {
				next, err = d.n.kv.Update(ctx, peer, b, rev)
			}
		}
		if err == nil {
			d.setRevision(peer, next)
			return nil
		}
		if !isConflict(err) {
			return err
		}
		if lost := d.reread(ctx, peer, q.at); lost {
			return nil
		}
	}
	return errors.New("cluster: directory write kept conflicting")
}

func isConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// reread learns an entry's current revision after a conflict, from the
// stream's leader (a KV get may be served by a replica that lags, whose
// revision would conflict again). It reports whether another node holds
// the session at a higher epoch, in which case this node lets it go.
func (d *directory) reread(ctx context.Context, peer string, mine stamp) (lost bool) {
	rev, value, err := d.leaderGet(ctx, peer)
	if err != nil {
		return false
	}
	d.setRevision(peer, rev)
	var r record
	if value == nil || json.Unmarshal(value, &r) != nil {
		return false
	}
	if r.Node != d.n.id && r.Epoch > mine.Epoch {
		if !d.holds(peer, r.Epoch) {
			d.n.handOn(r.Node, peer, d.n.hub.Handover(peer, r.Node))
		}
		return true
	}
	return false
}

// holds reports whether this node holds peer in an epoch after epoch: it
// took the session back since the state it was writing (claimed), and
// that state is stale, not a sign that the session is another node's.
func (d *directory) holds(peer string, epoch uint64) bool {
	d.imu.Lock()
	defer d.imu.Unlock()
	e := d.byPeer[peer]
	return e != nil && !e.gone && e.st.Node == d.n.id && e.applied.Epoch > epoch
}

// leaderGet reads peer's last entry from the stream's leader with the
// JetStream API: its revision, and its value (nil if there is none, or it
// is a delete or purge marker; the revision is then the marker's, or 0).
func (d *directory) leaderGet(ctx context.Context, peer string) (uint64, []byte, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": "$KV." + d.n.cfg.Bucket + "." + peer})
	m, err := d.n.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+d.n.cfg.Bucket, req)
	if err != nil {
		return 0, nil, err
	}
	var resp struct {
		Message *struct {
			Seq  uint64 `json:"seq"`
			Data []byte `json:"data"`
			Hdrs []byte `json:"hdrs"`
		} `json:"message"`
		Error *struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return 0, nil, err
	}
	switch {
	case resp.Error != nil && resp.Error.Code == 404:
		return 0, nil, nil
	case resp.Error != nil || resp.Message == nil:
		return 0, nil, errors.New("cluster: the directory's leader did not answer")
	case bytes.Contains(resp.Message.Hdrs, []byte("KV-Operation")):
		return resp.Message.Seq, nil, nil // a delete or purge marker
	}
	return resp.Message.Seq, resp.Message.Data, nil
}

// superseded reports whether a state of peer stamped at is older than
// what this node knows of peer: its end, its move to another node, or a
// newer state of this node's own, which its writer writes in its turn. A
// writer that is behind would otherwise write a state this node queued
// before the session moved away and came back (a client resuming round
// the nodes): the write conflicts with the entry of the node it moved to,
// whose epoch is above that old state's, and reread would hand the
// session, which this node holds again in a newer epoch, to that node.
func (d *directory) superseded(peer string, at stamp) bool {
	d.imu.Lock()
	defer d.imu.Unlock()
	e := d.byPeer[peer]
	return e != nil && e.applied.after(at)
}

func (d *directory) revision(peer string) uint64 {
	d.imu.Lock()
	defer d.imu.Unlock()
	if e := d.byPeer[peer]; e != nil {
		return e.rev
	}
	return 0
}

// setRevision records peer's KV revision, if the directory still has an
// entry for it: one the watch has removed meanwhile stays removed.
func (d *directory) setRevision(peer string, rev uint64) {
	d.imu.Lock()
	defer d.imu.Unlock()
	if e := d.byPeer[peer]; e != nil {
		e.rev = rev
	}
}

// flush waits until every queued write is done, or ctx ends.
func (d *directory) flush(ctx context.Context) {
	d.mu.Lock()
	if len(d.pending) == 0 {
		d.mu.Unlock()
		return
	}
	if d.idle == nil {
		d.idle = make(chan struct{})
	}
	idle := d.idle
	d.mu.Unlock()
	select {
	case <-idle:
	case <-ctx.Done():
	}
}

// load starts the watch and returns when it has delivered every existing
// entry, so that the hub knows the cluster's sessions before it serves.
func (d *directory) load(ctx context.Context) error {
	loaded, err := d.startWatch()
	if err != nil {
		return err
	}
	select {
	case <-loaded:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cluster: loading the session directory: %w", ctx.Err())
	}
}

// rewatch restarts the watch, retrying while JetStream elects a leader:
// after NATS reconnects, a new watch is faster than waiting for the old
// one to notice its server is gone. The new one delivers every current
// entry again; the stamps make that harmless. While the connection is
// down it waits for it without trying: each try failed at once ("nats:
// outbound buffer limit exceeded", nothing is buffered while
// disconnected), and was logged and counted as a KV error every 2 s for
// as long as NATS was away. Only the first failure of a run is a warning.
func (d *directory) rewatch() {
	d.n.run(func(ctx context.Context) {
		failed := false
		for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
			if d.n.nc.IsConnected() {
				_, err := d.startWatch()
				if err == nil {
					d.n.log.Info("cluster: directory watch restarted")
					return
				}
				d.n.stats.kvErrors.Inc()
				level := slog.LevelWarn
				if failed {
					level = slog.LevelDebug
				}
				d.n.log.Log(ctx, level, "cluster: restarting the directory watch; will retry", slog.Any("err", err))
				failed = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	})
}

// startWatch stops the current watch, if any, and starts a new one. The
// returned channel closes when it has delivered the existing entries.
func (d *directory) startWatch() (<-chan struct{}, error) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.watcher != nil {
		_ = d.watcher.Stop()
		d.watcher = nil
	}
	w, err := d.n.kv.Watch(d.n.ctx, "*") // peer ids only: see healthKey
	if err != nil {
		return nil, fmt.Errorf("cluster: watch the session directory: %w", err)
	}
	d.watcher = w
	loaded := make(chan struct{})
	d.n.run(func(ctx context.Context) { d.watch(w, loaded) })
	return loaded, nil
}

// watch applies the directory's entries as they come; the first nil entry
// marks the end of the existing ones.
func (d *directory) watch(w jetstream.KeyWatcher, loaded chan struct{}) {
	defer func() { _ = w.Stop() }()
	for e := range w.Updates() {
		if e == nil {
			if loaded != nil {
				close(loaded)
				loaded = nil
			}
			continue
		}
		d.applyMu.Lock()
		d.applyEntry(e)
		d.applyMu.Unlock()
	}
}

// applyEntry takes one KV entry. d.applyMu is held.
func (d *directory) applyEntry(e jetstream.KeyValueEntry) {
	peer := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		d.applyDeleted(peer, e.Revision())
		return
	}
	var r record
	if err := json.Unmarshal(e.Value(), &r); err != nil || !validToken(r.Node) {
		d.n.stats.badMessages.Inc()
		return
	}
	at := stamp{r.Epoch, r.Ver}
	d.imu.Lock()
	en := d.entryLocked(peer)
	en.rev = max(en.rev, e.Revision())
	if at.after(en.kv) {
		en.kv = at
	}
	d.imu.Unlock()
	d.applyState(peer, r.state(peer), at)
}

// applyDeleted takes a removed KV entry: the session ended, or its node
// was gone and another node removed it. A newer state that came directly
// (a client that resumed elsewhere) wins: its own entry follows. An entry
// this node has becomes a tombstone (a direct state or Gone may still
// come); it makes none for a session it does not know.
func (d *directory) applyDeleted(peer string, rev uint64) {
	d.imu.Lock()
	local := d.n.hub.IsLocal(peer)
	newer := false
	if e := d.byPeer[peer]; e != nil {
		e.rev = max(e.rev, rev)
		newer = e.applied.after(e.kv) && !e.gone
		if !newer && !local && (!e.gone || e.goneAt.IsZero()) {
			d.buryLocked(peer, e)
		}
	}
	d.imu.Unlock()
	switch {
	case local:
		// Another node removed a session this node holds (it took this
		// node for gone): write it again.
		d.republish(peer)
	case !newer:
		d.n.hub.Remove(peer)
		d.n.ord.forget(peer)
	}
}

// byToken finds a session of another node by its resume token hash.
func (d *directory) byToken(hash []byte) (hub.SessionState, bool) {
	d.imu.Lock()
	defer d.imu.Unlock()
	st, ok, _ := d.byTokenLocked(hash)
	return st, ok
}

// byTokenLocked is byToken with d.imu held; news is closed when byTok
// next learns a token.
func (d *directory) byTokenLocked(hash []byte) (st hub.SessionState, ok bool, news <-chan struct{}) {
	peer, ok := d.byTok[string(hash)]
	e := d.byPeer[peer]
	if !ok || e == nil || e.gone {
		return hub.SessionState{}, false, d.tokNews
	}
	return e.st, true, d.tokNews
}

// waitToken is byToken, waiting up to wait for a token not known yet: a
// client that resumed on another node a moment ago, and reconnects here
// at once, presents the token that node made, which this node hears of
// within milliseconds. Without the wait it got a new session, and its
// session waited out its resume window on the other node.
func (d *directory) waitToken(hash []byte, wait time.Duration) (hub.SessionState, bool) {
	deadline := time.Now().Add(wait)
	for first := true; ; first = false {
		d.imu.Lock()
		st, ok, news := d.byTokenLocked(hash)
		d.imu.Unlock()
		left := time.Until(deadline)
		if ok || left <= 0 {
			return st, ok
		}
		if hook := d.n.testHookTokenWait.Load(); first && hook != nil {
			(*hook)()
		}
		t := time.NewTimer(left)
		select {
		case <-news:
		case <-t.C:
		}
		t.Stop()
	}
}

// dropNode forgets the sessions the directory has for node, a node gone,
// and returns them with their revisions, for their KV removal. Forgotten,
// not kept as tombstones: if node was only cut off from this node (or this
// node from NATS), the watch, restarted when it is heard again, brings the
// same states with the same stamps, and they must be applied again.
//
// The tombstones of node's sessions stay (their KV entries, if any, are
// removed too): those sessions ended, and this node heard it. Were they
// forgotten, a late state of one (a write of node's that was behind, read
// by the watch restarted when node is heard again) would bring it back,
// alive on node, for good.
func (d *directory) dropNode(node string) map[string]uint64 {
	d.imu.Lock()
	defer d.imu.Unlock()
	out := map[string]uint64{}
	for peer, e := range d.byPeer {
		if e.st.Node == node && e.gone {
			out[peer] = e.rev
			continue
		}
		if e.st.Node == node {
			out[peer] = e.rev
			if len(e.st.TokenHash) > 0 {
				delete(d.byTok, string(e.st.TokenHash))
			}
			e.gone = true
			d.indexLocked(peer, e)
			delete(d.byPeer, peer)
		}
	}
	return out
}

// republish writes a local session's state again.
func (d *directory) republish(peer string) {
	for _, st := range d.n.hub.LocalStates() {
		if st.Member.Peer == peer {
			d.n.Publish(st)
			return
		}
	}
}
