package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/khadga/khadga/internal/natsconn"
	"github.com/khadga/khadga/proto"
)

// Revocation across the cluster: signing out, disabling or deleting a user
// and retiring a key end the user's sessions on every node. The node where
// it happens ends its own at once and tells the others on the revoke
// subject. Node implements package signaling's session closer.
//
// Each node hears the revoke and relogin subjects two ways, and handles
// each revocation once, whichever way brings it first:
//
//   - over NATS core, subscribed to the subjects, as every version did: a
//     plain publish reaches every connected node, whatever JetStream's
//     state. The revocation stream's Raft group is its own, apart from the
//     KV buckets': it may have no leader (an election, no quorum of its
//     servers) while the store that made the revocation takes writes, and
//     a publish it does not take in is lost to it without a word (no
//     acknowledgement comes back).
//   - from a JetStream stream that keeps what is published on the
//     subjects for Config.RevocationReplay, read with an ordered consumer:
//     a node cut off from NATS when a revocation went out gets it when it
//     is back (NATS core keeps nothing for a subscriber that is away, and
//     a session on that node outlived its revocation for as long as its
//     socket stayed open). A node cut off for longer than the stream keeps
//     them has its sessions checked against the store (revgap.go).
//
// Each revocation carries an id (revocation.ID), and a node remembers the
// ids it handled for as long as the stream may bring them again
// (seenRevocations). Revocations from nodes of an older version have no
// id and are handled as often as they come: the second time, a moment
// after the first, finds nothing left to end. Publishers are unchanged
// otherwise (plain publishes, which the stream takes in), so that nodes of
// an older version and `khadga user` commands (Revoke) reach the new ones
// and the other way round during a rolling update.
//
// There is no one order of revocations across the cluster: the node that
// serves one applies it to its own sessions at once, NATS core keeps only
// one publisher's order, each node finds a retired key itself, through its
// watch of the keys in the store (package signaling), and the two ways
// here race. The hub
// makes the orders that matter come out the same (a sign-out of a sign-in
// heard before the move to it ends what the move then moves, package hub).
// Within one node, revocations are handled one at a time (revokeMu), and
// each way keeps its own order: the stream's for the stream, and one
// publisher's for NATS core (both subjects on one queue).

type revocation struct {
	// ID tells the two ways a revocation comes (NATS core and the stream)
	// apart from two revocations; empty from nodes of an older version.
	ID     string     `json:"id,omitempty"`
	Node   string     `json:"node"`
	User   string     `json:"user"`
	Login  string     `json:"login,omitempty"`   // empty: every sign-in of User
	MoveTo string     `json:"move_to,omitempty"` // on the relogin subject: Login's sessions move to this sign-in
	Code   proto.Code `json:"code"`
	Reason string     `json:"reason"`
}

// CloseUser ends every session of user, on every node. It returns how many
// of this node's sessions ended (the others end theirs as they hear).
func (n *Node) CloseUser(user string, code proto.Code, reason string) int {
	n.broadcastRevocation(revocation{User: user, Code: code, Reason: reason})
	return n.hub.CloseUser(user, code, reason)
}

// CloseLogin ends the sessions of one sign-in of user, on every node.
func (n *Node) CloseLogin(user, login string, code proto.Code, reason string) int {
	n.broadcastRevocation(revocation{User: user, Login: login, Code: code, Reason: reason})
	return n.hub.CloseLogin(user, login, code, reason)
}

// MoveLogin gives the sessions of one sign-in of user another, on every
// node (a password change). It has a subject of its own: a node of an
// older version, during a rolling update, would take it on the revoke
// subject for a sign-out of the sign-in that changed the password.
func (n *Node) MoveLogin(user, from, to string) int {
	n.broadcast("relogin", revocation{User: user, Login: from, MoveTo: to})
	return n.hub.MoveLogin(user, from, to)
}

func (n *Node) broadcastRevocation(r revocation) { n.broadcast("revoke", r) }

func (n *Node) broadcast(subject string, r revocation) {
	r.ID, r.Node = newRevocationID(), n.id
	b, _ := json.Marshal(r)
	if !n.news.add(outMsg{subject: n.subject(subject), data: b}, n.cfg.Outbox) {
		n.log.Warn("cluster: could not tell the other nodes: too many revocations wait for NATS", slog.String("subject", subject))
	}
}

// newsQueue holds the revocations and moves this node served, in order,
// until NATS has each (announce). They do not go through the outbox,
// whose publishes are tried once: the store has taken a revocation before
// it is broadcast, and a broadcast whose publish failed (NATS went away
// between the two, while the outbox was behind; nothing is buffered while
// disconnected) reached no node over NATS core and never entered the
// stream, so no node found a gap either, and the revoked sessions on the
// other nodes lived on for as long as their sockets stayed open
// (TestRevocationOutlivesTheServingNodesCut).
type newsQueue struct {
	mu   sync.Mutex
	msgs []outMsg
	wake chan struct{}
	done bool // Close has published what was left
}

// add queues m unless limit messages wait already, or the node is closed.
func (q *newsQueue) add(m outMsg, limit int) bool {
	q.mu.Lock()
	if q.done || len(q.msgs) >= limit {
		q.mu.Unlock()
		return false
	}
	q.msgs = append(q.msgs, m)
	q.mu.Unlock()
	kick(q.wake)
	return true
}

// first returns the oldest message waiting.
func (q *newsQueue) first() (outMsg, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.msgs) == 0 {
		return outMsg{}, false
	}
	return q.msgs[0], true
}

// drop removes the oldest message, which NATS has.
func (q *newsQueue) drop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.msgs[0] = outMsg{}
	q.msgs = q.msgs[1:]
}

// rest empties the queue for good and returns what it held.
func (q *newsQueue) rest() []outMsg {
	q.mu.Lock()
	defer q.mu.Unlock()
	msgs := q.msgs
	q.msgs, q.done = nil, true
	return msgs
}

// newsRetry is the pause before a revocation whose publish failed is
// published again.
const newsRetry = 100 * time.Millisecond

// announce publishes the queued revocations and moves one at a time, in
// order, until ctx ends: each is published again until a flush after it
// succeeds (the server has it, and has passed it to the subscribers and
// the stream). A publish whose flush failed may have gone out all the
// same: the copy that comes again is a repeat, by its id.
func (n *Node) announce(ctx context.Context) {
	for {
		m, ok := n.news.first()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-n.news.wake:
			}
			continue
		}
		if err := n.publishFlushed(m.subject, m.data); err != nil {
			n.stats.publishErrors.Inc()
			n.log.Debug("cluster: a revocation did not go out; will retry", slog.String("subject", m.subject), slog.Any("err", err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(newsRetry):
			}
			continue
		}
		n.news.drop()
	}
}

// publishFlushed publishes data on subject and waits until the server
// has it.
func (n *Node) publishFlushed(subject string, data []byte) error {
	if hook := n.testHookSend.Load(); hook != nil {
		(*hook)(subject, data)
	}
	if err := n.nc.Publish(subject, data); err != nil {
		return err
	}
	return n.nc.FlushTimeout(time.Second)
}

// onRevoke handles a revocation or a move from another node, which came
// over NATS core or from the stream (via), unless it handled it already.
func (n *Node) onRevoke(m *nats.Msg, via string) {
	var r revocation
	if json.Unmarshal(m.Data, &r) != nil || r.User == "" {
		n.stats.badMessages.Inc()
		return
	}
	if r.Node == n.id {
		return // this node ended its own when it sent it
	}
	n.revokeMu.Lock() // until handled: the other way's copy waits, then finds it seen
	defer n.revokeMu.Unlock()
	if r.ID != "" && !n.seen.add(r.ID, time.Now()) {
		n.stats.revocations.WithLabelValues(via, "repeat").Inc()
		return
	}
	n.stats.revocations.WithLabelValues(via, "handled").Inc()
	switch {
	case m.Subject == n.subject("relogin"):
		if r.Login != "" && r.MoveTo != "" {
			n.hub.MoveLogin(r.User, r.Login, r.MoveTo)
		}
	case r.Login != "":
		n.hub.CloseLogin(r.User, r.Login, r.Code, r.Reason)
	default:
		n.hub.CloseUser(r.User, r.Code, r.Reason)
	}
}

// The ways a revocation comes to a node (the via label of
// khadga_cluster_revocations_total).
const (
	viaCore   = "core"
	viaStream = "stream"
)

// Revoke ends sessions on every node of the cluster whose subject prefix
// is subject (Config.Subject, "" for the default), from a process that is
// no node: `khadga user disable --nats ...` and the other admin commands.
// login "" ends every session of user.
func Revoke(nc *nats.Conn, subject, user, login string, code proto.Code, reason string) error {
	if subject == "" {
		subject = "khadga"
	}
	b, err := json.Marshal(revocation{ID: newRevocationID(), User: user, Login: login, Code: code, Reason: reason})
	if err != nil {
		return err
	}
	if err := nc.Publish(subject+".revoke", b); err != nil {
		return err
	}
	return nc.Flush()
}

// DefaultRevocationReplay is how long the revocation stream keeps a revocation
// by default (Config.RevocationReplay): a node cut off from NATS for
// longer finds a gap when it is back, and has its sessions checked
// against the store (revgap.go). By then the other nodes have long taken
// it for gone and shown its sessions offline.
const DefaultRevocationReplay = 10 * time.Minute

// revocationStream names the stream of the revoke and relogin subjects of
// the cluster whose subject prefix is subject.
func revocationStream(subject string) string {
	return strings.ReplaceAll(subject, ".", "_") + "-revocations"
}

func createRevocationStream(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	name := revocationStream(cfg.Subject)
	_, err := natsconn.MakeStream(ctx, js, jetstream.StreamConfig{
		Name:        name,
		Description: "khadga: revocations and sign-in moves, for nodes that were away when they went out",
		Subjects:    []string{cfg.Subject + ".revoke", cfg.Subject + ".relogin"},
		MaxAge:      cfg.RevocationReplay,
		MaxBytes:    64 << 20,
		Replicas:    natsconn.KeepReplicas(ctx, js, name, cfg.Replicas, cfg.Logger),
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("cluster: revocation stream %s: %w", name, err)
	}
	return nil
}

// revocationConsumerIdle is how long the server keeps a node's consumer
// of the revocation stream once nothing reads it (the node stopped,
// crashed or was cut off). The ordered consumer keeps its place on the
// node's side and, back from a cut, makes a new one from the sequence
// after the last it delivered, so the server's copy need not wait for it.
const revocationConsumerIdle = 30 * time.Second

// hearRevocations has onRevoke handle what is published on the revoke and
// relogin subjects from now on, both ways, until Close: over NATS core,
// and from the revocation stream.
func (n *Node) hearRevocations(ctx context.Context) error {
	if err := n.subscribeRevocations(); err != nil {
		return err
	}
	return n.consumeRevocations(ctx)
}

// subscribeRevocations subscribes to the revoke and relogin subjects over
// NATS core, on one queue that one goroutine empties, so that one
// publisher's revocations and moves are handled in the order it sent them.
// A revocation that finds the queue full is dropped by NATS (a slow
// consumer); the stream still brings it.
func (n *Node) subscribeRevocations() error {
	ch := make(chan *nats.Msg, revocationQueue)
	for _, subj := range []string{n.subject("revoke"), n.subject("relogin")} {
		sub, err := n.nc.ChanSubscribe(subj, ch)
		if err != nil {
			return fmt.Errorf("cluster: subscribe %s: %w", subj, err)
		}
		n.subs = append(n.subs, sub)
	}
	handle := n.handler(func(m *nats.Msg) { n.onRevoke(m, viaCore) })
	n.run(func(ctx context.Context) {
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-ch:
				handle(m)
			}
		}
	})
	return nil
}

// revocationQueue bounds the revocations that wait for a node's handler.
const revocationQueue = 4096

// consumeRevocations has onRevoke handle what the revocation stream takes
// in from now on, in its order, until Close (consumeRevocationsFrom).
func (n *Node) consumeRevocations(ctx context.Context) error {
	name := revocationStream(n.cfg.Subject)
	st, err := n.js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("cluster: revocation stream %s: %w", name, err)
	}
	info := st.CachedInfo()
	return n.consumeRevocationsFrom(ctx, st, info.Created, info.State.LastSeq)
}

// seenRevocations is the ids of the revocations a node handled, kept for
// keep (the stream's copy of one that came over NATS core comes within
// that; default revocationSeenFor), and at most maxSeenRevocations of
// them: past that the oldest are forgotten, and a copy of one of those
// that came later would be handled again.
type seenRevocations struct {
	ids   map[string]struct{}
	order []seenRevocation // oldest first
	keep  time.Duration    // Config.RevocationReplay and a minute
}

type seenRevocation struct {
	id string
	at time.Time
}

const (
	revocationSeenFor  = DefaultRevocationReplay + time.Minute
	maxSeenRevocations = 1 << 16
)

// add records id, seen at now, and reports whether it is new. It forgets
// what it has kept for long enough. The caller holds Node.revokeMu.
func (s *seenRevocations) add(id string, now time.Time) bool {
	keep := cmp.Or(s.keep, revocationSeenFor)
	for len(s.order) > 0 && (len(s.order) >= maxSeenRevocations || now.Sub(s.order[0].at) > keep) {
		delete(s.ids, s.order[0].id)
		s.order[0] = seenRevocation{}
		s.order = s.order[1:]
	}
	if _, ok := s.ids[id]; ok {
		return false
	}
	if s.ids == nil {
		s.ids = map[string]struct{}{}
	}
	s.ids[id] = struct{}{}
	s.order = append(s.order, seenRevocation{id, now})
	return true
}

// newRevocationID is a revocation's id: random, as no two may share one.
func newRevocationID() string { return randomID() }
