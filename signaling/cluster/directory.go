package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// directory is the cluster's session directory: one JetStream KV entry per
// session (key: peer id), written by the node that holds the session and
// watched by every node. What a node learns from it becomes proxies in its
// hub (hub.Apply, hub.Remove); it also finds sessions by resume token for a
// claim. Writes are queued and coalesced per session (the latest state
// wins), so that the hub's Publish never waits on NATS.
//
// Every write is a compare-and-swap on the entry's revision, and carries
// the session's epoch, which a claim raises: a node that lost a session to
// another (its client resumed there) may still have a write queued, and
// that write then fails on the revision and yields to the higher epoch
// instead of taking the session back.
type directory struct {
	n *Node

	mu      sync.Mutex
	pending map[string]*hub.SessionState // peer -> state to write; nil: delete
	order   []string
	wake    chan struct{}
	idle    chan struct{} // closed when pending is empty, for flush; nil when not waited on

	// The watch: one at a time; apply is serialised across a restart.
	wmu     sync.Mutex
	watcher jetstream.KeyWatcher
	applyMu sync.Mutex

	// What the watch has seen of every session, and the revisions and
	// epochs of entries.
	imu    sync.Mutex
	byPeer map[string]entry
	byTok  map[string]string // token hash -> peer (other nodes' sessions)
}

type entry struct {
	st    hub.SessionState
	rev   uint64
	epoch uint64
}

// record is a session as the directory stores it (JSON).
type record struct {
	User   string   `json:"user"`
	Role   string   `json:"role"`
	Node   string   `json:"node"`
	Rooms  []string `json:"rooms,omitempty"`
	Grants []string `json:"grants,omitempty"`
	Login  string   `json:"login,omitempty"`
	Key    string   `json:"key,omitempty"`
	Token  []byte   `json:"tok,omitempty"`
	// Epoch counts the session's moves between nodes: a claim raises it.
	Epoch uint64 `json:"epoch"`
}

func newDirectory(n *Node) *directory {
	return &directory{n: n, pending: map[string]*hub.SessionState{}, wake: make(chan struct{}, 1),
		byPeer: map[string]entry{}, byTok: map[string]string{}}
}

// Publish queues a local session's state for the directory (hub.Delivery).
func (n *Node) Publish(st hub.SessionState) {
	st.Node = n.id
	n.dir.queue(st.Member.Peer, &st)
}

// Gone queues the removal of a local session (hub.Delivery).
func (n *Node) Gone(peer string) { n.dir.queue(peer, nil) }

func (d *directory) queue(peer string, st *hub.SessionState) {
	d.mu.Lock()
	if _, ok := d.pending[peer]; !ok {
		d.order = append(d.order, peer)
	}
	d.pending[peer] = st
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
	d.order, d.pending = nil, map[string]*hub.SessionState{}
	d.mu.Unlock()
	for _, peer := range order {
		st := pending[peer]
		if err := d.put(ctx, peer, st); err != nil {
			failed = true
			d.n.stats.kvErrors.Inc()
			d.n.log.Warn("cluster: directory write failed; will retry", slog.String("peer", peer), slog.Any("err", err))
			d.mu.Lock()
			if _, newer := d.pending[peer]; !newer {
				d.pending[peer] = st
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

// put writes a session's state (nil: removes it), as a compare-and-swap
// on the last revision this node knows. On a conflict it reads what is
// there: a higher epoch of another node means the session moved on (this
// node lets it go); otherwise it retries on the new revision.
func (d *directory) put(ctx context.Context, peer string, st *hub.SessionState) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	defer func() { d.n.stats.kvLatency.Observe(time.Since(start).Seconds()) }()
	for range 4 {
		rev, epoch := d.revision(peer)
		var err error
		var next uint64
		switch {
		case st == nil && rev == 0:
			return nil
		case st == nil:
			err = d.n.kv.Delete(ctx, peer, jetstream.LastRevision(rev))
		default:
			b, _ := json.Marshal(record{User: st.Member.User, Role: st.Member.Role, Node: st.Node, Rooms: st.Rooms,
				Grants: st.Grants, Login: st.Login, Key: st.KeyID, Token: st.TokenHash, Epoch: epoch})
			if rev == 0 {
				next, err = d.n.kv.Create(ctx, peer, b)
			} else {
				next, err = d.n.kv.Update(ctx, peer, b, rev)
			}
		}
		if err == nil {
			d.setRevision(peer, next, epoch)
			return nil
		}
		if !isConflict(err) {
			return err
		}
		if lost := d.reread(ctx, peer, epoch); lost {
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
func (d *directory) reread(ctx context.Context, peer string, epoch uint64) (lost bool) {
	rev, value, err := d.leaderGet(ctx, peer)
	if err != nil {
		return false
	}
	if value == nil { // no entry, or a deleted one
		d.setRevision(peer, rev, epoch)
		return false
	}
	var r record
	if json.Unmarshal(value, &r) != nil {
		d.setRevision(peer, rev, epoch)
		return false
	}
	if r.Node != d.n.id && r.Epoch > epoch {
		for _, env := range d.n.hub.Handover(peer, r.Node) {
			_ = d.n.Deliver(r.Node, peer, env)
		}
		return true
	}
	d.setRevision(peer, rev, max(epoch, r.Epoch))
	return false
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

// revision returns the last known revision and epoch of peer's entry; a
// session this node never saw starts at epoch 1.
func (d *directory) revision(peer string) (rev, epoch uint64) {
	d.imu.Lock()
	defer d.imu.Unlock()
	e, ok := d.byPeer[peer]
	if !ok {
		return 0, 1
	}
	return e.rev, max(e.epoch, 1)
}

func (d *directory) setRevision(peer string, rev, epoch uint64) {
	d.imu.Lock()
	defer d.imu.Unlock()
	e := d.byPeer[peer]
	e.rev, e.epoch = rev, epoch
	if rev == 0 && e.st.Member.Peer == "" {
		delete(d.byPeer, peer)
		return
	}
	d.byPeer[peer] = e
}

// claimed raises the epoch of a session this node takes from another.
func (d *directory) claimed(peer string) {
	d.imu.Lock()
	defer d.imu.Unlock()
	e := d.byPeer[peer]
	e.epoch++
	d.byPeer[peer] = e
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

// rewatch restarts the watch: after NATS reconnects, a new watch is
// faster than waiting for the old one to notice its server is gone. The
// new one delivers every current entry again; apply skips what it knows.
func (d *directory) rewatch() {
	d.n.run(func(ctx context.Context) {
		for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
			_, err := d.startWatch()
			if err == nil {
				return
			}
			d.n.stats.kvErrors.Inc()
			d.n.log.Warn("cluster: restarting the directory watch; will retry", slog.Any("err", err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait): // JetStream may be electing a leader
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
	w, err := d.n.kv.WatchAll(d.n.ctx)
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
		d.apply(e)
		d.applyMu.Unlock()
	}
}

// apply takes one directory entry into the hub.
func (d *directory) apply(e jetstream.KeyValueEntry) {
	peer := e.Key()
	if d.stale(peer, e.Revision()) {
		return // a watch restarted: already applied
	}
	if e.Operation() != jetstream.KeyValuePut {
		d.forget(peer)
		if d.n.hub.IsLocal(peer) {
			// Another node removed a session this node holds (it took this
			// node for gone): write it again.
			d.republish(peer)
			return
		}
		d.n.hub.Remove(peer)
		return
	}
	var r record
	if err := json.Unmarshal(e.Value(), &r); err != nil || !validToken(r.Node) {
		d.n.stats.badMessages.Inc()
		return
	}
	st := hub.SessionState{Member: proto.Member{Peer: peer, User: r.User, Role: r.Role}, Node: r.Node,
		Rooms: r.Rooms, Grants: r.Grants, Login: r.Login, KeyID: r.Key, TokenHash: r.Token}
	d.remember(peer, st, e.Revision(), r.Epoch)
	if r.Node == d.n.id {
		return // the echo of this node's own write
	}
	d.n.live.saw(r.Node)
	if d.n.hub.IsLocal(peer) {
		// Another node took a session of this node (its client resumed
		// there) without asking, or before asking: let it go, with what
		// waited for it.
		for _, env := range d.n.hub.Handover(peer, r.Node) {
			_ = d.n.Deliver(r.Node, peer, env)
		}
	}
	d.n.hub.Apply(st)
}

// remember records an entry the watch delivered. Revisions only go up: an
// entry older than one this node already knows (its own write's, say) does
// not move it back.
// stale reports whether the entry at rev is older than what this node
// knows of peer.
func (d *directory) stale(peer string, rev uint64) bool {
	d.imu.Lock()
	defer d.imu.Unlock()
	e, ok := d.byPeer[peer]
	return ok && e.st.Member.Peer != "" && e.rev > rev
}

func (d *directory) remember(peer string, st hub.SessionState, rev, epoch uint64) {
	d.imu.Lock()
	defer d.imu.Unlock()
	old, ok := d.byPeer[peer]
	if ok && old.rev > rev {
		return
	}
	if ok && string(old.st.TokenHash) != string(st.TokenHash) {
		delete(d.byTok, string(old.st.TokenHash))
	}
	d.byPeer[peer] = entry{st: st, rev: rev, epoch: max(epoch, old.epoch)}
	if len(st.TokenHash) > 0 && st.Node != d.n.id {
		d.byTok[string(st.TokenHash)] = peer
	}
}

func (d *directory) forget(peer string) {
	d.imu.Lock()
	defer d.imu.Unlock()
	if old, ok := d.byPeer[peer]; ok {
		delete(d.byTok, string(old.st.TokenHash))
		delete(d.byPeer, peer)
	}
}

// byToken finds a session of another node by its resume token hash.
func (d *directory) byToken(hash []byte) (hub.SessionState, bool) {
	d.imu.Lock()
	defer d.imu.Unlock()
	peer, ok := d.byTok[string(hash)]
	if !ok {
		return hub.SessionState{}, false
	}
	return d.byPeer[peer].st, true
}

// ofNode lists the sessions the directory has for node, with revisions.
func (d *directory) ofNode(node string) map[string]uint64 {
	d.imu.Lock()
	defer d.imu.Unlock()
	out := map[string]uint64{}
	for peer, e := range d.byPeer {
		if e.st.Node == node {
			out[peer] = e.rev
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
