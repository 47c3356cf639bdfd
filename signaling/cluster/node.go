package cluster

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/khadga/khadga/internal/natsconn"
	"github.com/khadga/khadga/signaling/hub"
)

// Config configures a Node. Zero fields take the defaults named on them.
type Config struct {
	// NodeID names this node; default a random one. Node ids are never
	// reused: a restarted node is a new node.
	NodeID string
	// Subject is the prefix of every subject the cluster uses (default
	// "khadga"); clusters that share a NATS system need their own.
	Subject string
	// Bucket is the JetStream KV bucket of the session directory (default
	// "khadga-sessions"), with Replicas replicas (default 1; 3 in a
	// 3-server NATS cluster).
	Bucket   string
	Replicas int
	// Heartbeat is how often a node says it is alive (default 1s), and
	// DeadAfter how long the others wait without a word before they take
	// it for gone (default 3s). OrphanGrace is how long a gone node's
	// sessions stay, for their clients to resume on another node, before
	// the others show them offline (default 5s).
	Heartbeat   time.Duration
	DeadAfter   time.Duration
	OrphanGrace time.Duration
	// AckWait bounds the wait for a node to say what became of a signal
	// sent to it (default 5s); HeldWait bounds the wait for a signal held
	// for an absent session to reach it (default: the hub's resume window
	// plus AckWait). Past them the sender is told the signal was not
	// delivered.
	AckWait  time.Duration
	HeldWait time.Duration
	// ClaimTimeout bounds the wait for the node that holds a session a
	// client resumes elsewhere (default 2s).
	ClaimTimeout time.Duration
	// TokenWait is how long a resume with a token this node has not heard
	// of waits for it (default 250ms): a resume on another node a moment
	// ago made it, and that node tells the others within milliseconds;
	// past it the client gets a new session, as for an expired token.
	TokenWait time.Duration
	// Outbox is how many messages may wait to go to NATS (default 65536),
	// and OutboxBytes how many bytes of them (default 64 MiB: 65536
	// signals near the size limit would be 4 GiB); a signal to another
	// node past either fails at once, and its sender is told. What keeps
	// the nodes in step (sessions' states and ends, room events, reports)
	// may take the outbox to twice the limits.
	Outbox      int
	OutboxBytes int
	// RevocationReplay is how long the revocation stream keeps
	// revocations and moves for nodes that were away when they went out
	// (default 10m). A node cut off for longer has its sessions checked
	// against the store again when it is back (revgap.go). Each node sets
	// it on the stream as it starts, so give every node the same.
	RevocationReplay time.Duration
	Logger           *slog.Logger
	Registerer       prometheus.Registerer

	// tombstoneTTL is how long the directory keeps an ended session's
	// entry (default tombstoneTTL); tests shorten it.
	tombstoneTTL time.Duration
	// revocationConsumerIdle is how long the server keeps the node's
	// consumer of the revocation stream once nothing reads it (default
	// revocationConsumerIdle); tests shorten it.
	revocationConsumerIdle time.Duration
}

func (c *Config) setDefaults() {
	if c.NodeID == "" {
		c.NodeID = randomID()
	}
	if c.Subject == "" {
		c.Subject = "khadga"
	}
	if c.Bucket == "" {
		c.Bucket = "khadga-sessions"
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	setDur(&c.Heartbeat, time.Second)
	setDur(&c.DeadAfter, 3*time.Second)
	setDur(&c.OrphanGrace, 5*time.Second)
	setDur(&c.AckWait, 5*time.Second)
	setDur(&c.ClaimTimeout, 2*time.Second)
	setDur(&c.TokenWait, 250*time.Millisecond)
	setDur(&c.tombstoneTTL, tombstoneTTL)
	setDur(&c.revocationConsumerIdle, revocationConsumerIdle)
	setDur(&c.RevocationReplay, DefaultRevocationReplay)
	if c.Outbox <= 0 {
		c.Outbox = 1 << 16
	}
	if c.OutboxBytes <= 0 {
		c.OutboxBytes = 64 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// randomID is 80 random bits in lower-case base32 (16 characters): a node's
// default id, a revocation's.
func randomID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

func setDur(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// validate reports every problem at once.
func (c *Config) validate() error {
	var errs []error
	if !validToken(c.NodeID) {
		errs = append(errs, fmt.Errorf("cluster: node id %q: use letters, digits, - and _ only", c.NodeID))
	}
	for _, part := range strings.Split(c.Subject, ".") {
		if !validToken(part) {
			errs = append(errs, fmt.Errorf("cluster: subject prefix %q: use dot-separated letters, digits, - and _", c.Subject))
			break
		}
	}
	if c.DeadAfter < 2*c.Heartbeat {
		errs = append(errs, fmt.Errorf("cluster: DeadAfter (%v) must be at least two heartbeats (%v)", c.DeadAfter, c.Heartbeat))
	}
	return errors.Join(errs...)
}

// validToken reports whether s is a safe NATS subject token and KV key part.
func validToken(s string) bool {
	if s == "" || len(s) > maxIDLen {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Node is one khadga node of a cluster: the hub's Delivery over NATS. Build
// it with New, give it to hub.New as Config.Delivery, then Start it with
// that hub; Drain and Close it when the node stops.
type Node struct {
	cfg Config
	id  string
	nc  *nats.Conn
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	log *slog.Logger
	hub *hub.Hub

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	subs   []*nats.Subscription
	// feed delivers the revoke and relogin subjects from their stream
	// and keeps the node's place in it (revoke.go, revgap.go); subs has
	// them over NATS core too. revokeMu makes the two ways handle
	// revocations one at a time, and seen, under it, has the ids of those
	// handled.
	feed     revocationFeed
	revokeMu sync.Mutex
	seen     seenRevocations
	// recheck re-checks this node's sessions against the store after a
	// gap in the revocation stream (OnRevocationGap);
	// gaps wakes the goroutine that runs it, and gapKick the one that
	// reads the stream's state.
	recheck  atomic.Pointer[func(ctx context.Context) (ended int, err error)]
	gaps     chan struct{}
	gapKick  chan struct{}
	gapStats *gapMetrics

	// handling lets Close wait for the subscription handlers that are
	// running (nats.go's Unsubscribe does not): each handler holds it
	// shared, and Close takes it whole once it has unsubscribed, so that
	// what they queue goes out with the outbox's last flush. closed, under
	// it, turns away any handler that starts later.
	handling sync.RWMutex
	closed   bool
	// testHookHandle, if set, runs in every handler before the message
	// is handled (tests hold a handler there).
	testHookHandle atomic.Pointer[func(*nats.Msg)]
	// testHookPublish, if set, runs at the start of every Publish (tests
	// end the session there, as a revocation racing with it would).
	testHookPublish atomic.Pointer[func(hub.SessionState)]
	// testHookClaimed, if set, runs in Claim once the session is this
	// node's to take (its old node let it go, or did not answer), before
	// the hub has it (tests revoke there, as a revocation racing the
	// claim would).
	testHookClaimed atomic.Pointer[func(hub.SessionState)]
	// testHookTokenWait, if set, runs when a resume's token is not known
	// here yet and Claim starts to wait for it (waitToken).
	testHookTokenWait atomic.Pointer[func()]
	// testHookSend, if set, runs before each of the outbox's publishes
	// (tests hold it there, as a NATS connection that takes nothing
	// would: nc.Publish blocks once its buffer is full).
	testHookSend atomic.Pointer[func(subject string, data []byte)]
	// endsUnsent says an end of a session of this node may have reached
	// no node: the outbox refused it, or NATS was away. liveness.check
	// sends the recent ends again (directory.resendEnds) until they go.
	endsUnsent atomic.Bool

	// readyMu guards the answer Ready keeps; the check (a JetStream
	// write) runs without it, one at a time (checking), and only that
	// check touches probeFailed.
	readyMu     sync.Mutex
	readyAt     time.Time
	readyErr    error
	checking    bool
	probeFailed time.Time // since when the probe write fails; zero if it works

	redeem  func(ticket string) ([]byte, bool) // ServeTickets; set before Start
	listens map[string]func(data []byte)       // Listen's topics; set before Start

	out   *outbox
	news  newsQueue // revocations and moves, until NATS has them (revoke.go)
	dir   *directory
	live  *liveness
	track *tracker
	ord   *orderer
	stats *metrics
}

// directoryMarkerTTL is how long the directory's KV stream keeps the
// marker of a removed entry (a session, a node's health key), which the
// directory's watchers read as its removal (a variable for tests). Peer
// and node ids are never reused, so a marker kept for good, one per
// session the cluster ever had, made the stream (NATS's memory and disk)
// grow for as long as the cluster ran. Ten minutes is far longer than
// anything that reads a removal late: a watch that restarts, a node's
// tombstones (tombstoneTTL).
var directoryMarkerTTL = 10 * time.Minute

// New prepares a node on an open NATS connection (which the caller owns
// and closes after the node): it makes the directory's KV bucket and the
// revocation stream, or brings them to cfg, trying again while JetStream
// cannot act on them (NATS away, a leader being elected, a slow answer)
// until ctx ends. Nothing is sent until Start.
func New(ctx context.Context, cfg Config, nc *nats.Conn) (*Node, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("cluster: jetstream: %w", err)
	}
	var kv jetstream.KeyValue
	err = untilAvailable(ctx, cfg.Logger, func(ctx context.Context) (err error) {
		kv, err = directoryBucket(ctx, js, cfg)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := untilAvailable(ctx, cfg.Logger, func(ctx context.Context) error {
		return createRevocationStream(ctx, js, cfg)
	}); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, id: cfg.NodeID, nc: nc, js: js, kv: kv, log: cfg.Logger.With(slog.String("node", cfg.NodeID)),
		gaps: make(chan struct{}, 1), gapKick: make(chan struct{}, 1), gapStats: newGapMetrics(),
		news: newsQueue{wake: make(chan struct{}, 1)}, readyErr: errNotChecked}
	n.seen.keep = cfg.RevocationReplay + time.Minute
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.stats = newMetrics(n)
	n.out = newOutbox(n)
	n.dir = newDirectory(n)
	n.live = newLiveness(n)
	n.track = newTracker(n)
	n.ord = newOrderer(n)
	if cfg.Registerer != nil {
		if err := n.stats.register(cfg.Registerer); err != nil {
			return nil, err
		}
		if err := n.gapStats.register(cfg.Registerer); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// ID is the node's id.
func (n *Node) ID() string { return n.id }

// Start connects the node to h and the cluster: it loads the directory
// (every other node's sessions become proxies in h), subscribes to its
// subjects and starts its heartbeat. It returns when the directory is
// loaded, so that h knows the cluster's sessions before it serves anyone.
func (n *Node) Start(ctx context.Context, h *hub.Hub) error {
	n.hub = h
	if n.cfg.HeldWait <= 0 {
		n.cfg.HeldWait = h.ResumeWindow() + n.cfg.AckWait
	}
	for subj, handler := range map[string]nats.MsgHandler{
		n.subject("node", n.id):           n.onNodeMessage,
		n.subject("node", n.id, "claim"):  n.onClaim,
		n.subject("node", n.id, "ticket"): n.onTicket,
		n.subject("node", n.id, "end"):    n.onEnd,
		n.subject("hb"):                   n.live.onHeartbeat,
	} {
		if err := n.subscribe(subj, handler); err != nil {
			n.Close()
			return err
		}
	}
	if err := n.listen(); err != nil {
		n.Close()
		return err
	}
	if err := n.hearRevocations(ctx); err != nil {
		n.Close()
		return err
	}
	n.run(n.out.run)
	n.run(n.announce)
	n.run(n.dir.write)
	n.run(n.dir.sweep)
	n.run(n.live.beats)
	n.run(n.live.checks)
	n.run(n.track.run)
	n.run(n.ord.run)
	n.run(n.watchRevocationStream)
	n.run(n.rechecks)
	n.run(n.stats.measureRTT)
	if err := n.dir.load(ctx); err != nil {
		n.Close()
		return err
	}
	n.log.Info("cluster: node started", slog.Int("sessions_elsewhere", h.Stats().Remote))
	return nil
}

// subscribe has h handle the messages on subj until Close.
func (n *Node) subscribe(subj string, h nats.MsgHandler) error {
	sub, err := n.nc.Subscribe(subj, n.handler(h))
	if err != nil {
		return fmt.Errorf("cluster: subscribe %s: %w", subj, err)
	}
	n.subs = append(n.subs, sub)
	return nil
}

// handler wraps h for Close to wait for (Node.handling).
func (n *Node) handler(h nats.MsgHandler) nats.MsgHandler {
	return func(m *nats.Msg) {
		n.handling.RLock()
		defer n.handling.RUnlock()
		if n.closed {
			return
		}
		if hook := n.testHookHandle.Load(); hook != nil {
			(*hook)(m)
		}
		h(m)
	}
}

// run starts f on a goroutine that Close waits for.
func (n *Node) run(f func(ctx context.Context)) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f(n.ctx)
	}()
}

// every calls f with the time of each tick of a period-long ticker until
// ctx ends.
func every(ctx context.Context, period time.Duration, f func(now time.Time)) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			f(now)
		}
	}
}

// subject joins the cluster's prefix and parts with dots.
func (n *Node) subject(parts ...string) string {
	return n.cfg.Subject + "." + strings.Join(parts, ".")
}

// Drain hands this node's sessions over to the others: it tells them it
// is leaving (so that they do not take it for dead while its clients
// resume elsewhere), waits until every session of the hub has been claimed
// by another node or ctx ends, then ends the sessions that are left, so
// that everyone sees them offline, and says goodbye. Call it after the
// hub's Shutdown (which told every client to reconnect).
func (n *Node) Drain(ctx context.Context) {
	n.live.setDraining()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for n.hub.Stats().Sessions > 0 {
		select {
		case <-ctx.Done():
			n.log.Info("cluster: drain deadline: ending the sessions that did not move", slog.Int("sessions", n.hub.Stats().Sessions))
			n.hub.EndSessions()
			// The ends are written if NATS takes them soon; if it has
			// no quorum, the others remove them once this node is gone.
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			n.dir.flush(fctx)
			cancel()
			n.bye()
			return
		case <-tick.C:
		}
	}
	n.dir.flush(ctx)
	n.bye()
}

// bye tells the others that this node leaves, and removes its readiness
// probe key, which would otherwise stay behind (a restarted node has a new
// id).
func (n *Node) bye() {
	n.live.bye()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = n.remove(ctx, healthKey(n.id))
}

// setupAttempt bounds one attempt to make or update the directory's
// bucket or the revocation stream; setupRetry is the pause between two.
const (
	setupAttempt = 5 * time.Second
	setupRetry   = time.Second
)

// untilAvailable runs f until it succeeds, fails for a reason other than
// JetStream being unreachable or without a leader for now, or ctx ends.
// Three nodes that start at once on a new three-server NATS cluster make
// the same replicated bucket together, and JetStream may take longer than
// a request's timeout to answer them all: two of the three nodes exited
// ("context deadline exceeded"), where the store's buckets, made the same
// way, were waited for.
func untilAvailable(ctx context.Context, log *slog.Logger, f func(ctx context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, setupAttempt)
		err := f(actx)
		cancel()
		if err == nil || !natsconn.IsUnavailable(err) && !natsconn.Leaderless(err) {
			return err
		}
		log.Warn("cluster: waiting for NATS JetStream", slog.Any("err", err))
		t := time.NewTimer(setupRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-t.C:
		}
	}
}

// directoryBucket makes or updates the directory's KV bucket, with
// removal markers that expire after directoryMarkerTTL. That needs NATS
// 2.11 or newer, as the account store's buckets do already.
func directoryBucket(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.KeyValue, error) {
	kv, err := natsconn.MakeKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "khadga: the sessions of every node (peer id -> state)",
		History:     1,
		Replicas:    natsconn.KeepReplicas(ctx, js, "KV_"+cfg.Bucket, cfg.Replicas, cfg.Logger),
		// On disk, so that a NATS restart keeps the directory; entries of
		// nodes that did not survive it are removed like those of any
		// node that is gone.
		Storage:        jetstream.FileStorage,
		LimitMarkerTTL: directoryMarkerTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: session directory %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// remove removes key from the directory: a purge, whose marker (what
// the watchers read as the removal) expires after directoryMarkerTTL.
func (n *Node) remove(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	return n.kv.Purge(ctx, key, append(opts, jetstream.PurgeTTL(directoryMarkerTTL))...)
}

// Close stops the node's goroutines and subscriptions, waits for the
// handlers that are running, and publishes what still waits in the outbox
// (a delivery after that is refused). It does not close the NATS
// connection.
func (n *Node) Close() {
	for _, s := range n.subs {
		_ = s.Unsubscribe()
	}
	n.feed.stop()
	n.cancel()
	n.handling.Lock() // the handlers running now end: they block on nothing Close holds
	n.closed = true
	n.handling.Unlock()
	n.wg.Wait()
	n.out.flushRest()
	for _, m := range n.news.rest() { // once each: the node leaves
		n.out.send(m.subject, m.data)
	}
	_ = n.nc.FlushTimeout(time.Second)
}

// Ready reports why this node cannot serve as part of the cluster, or nil:
// its NATS connection must be up and the session directory reachable. The
// answer is kept for a second from the end of its check, so that frequent
// probes cost nothing, and a probe that comes while a check runs gets the
// last answer at once: the check may wait 2 s for a slow JetStream, and
// probes that waited for it in turn each checked again (anyone may ask
// /readyz).
func (n *Node) Ready() error {
	n.readyMu.Lock()
	if n.checking || time.Since(n.readyAt) < time.Second {
		err := n.readyErr
		n.readyMu.Unlock()
		return err
	}
	n.checking = true
	n.readyMu.Unlock()
	err := n.checkReady()
	n.readyMu.Lock()
	n.readyAt, n.readyErr, n.checking = time.Now(), err, false
	n.readyMu.Unlock()
	return err
}

// errNotChecked is Ready's answer to a probe that comes while the first
// check runs.
var errNotChecked = errors.New("readiness not checked yet")

func (n *Node) checkReady() error {
	if st := n.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("NATS %s", strings.ToLower(st.String()))
	}
	ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
	defer cancel()
	// A write, not a read: a stream leader that lost its quorum may still
	// answer reads (its status) for a while, but no write succeeds
	// without a quorum, and neither would the node's sessions' writes.
	// Writes also fail for a second or two while JetStream elects a new
	// leader (one NATS server of three stopped), which the directory
	// rides out by retrying: only failures for longer than
	// unreadyAfter make the node unready, so that it does not flap.
	_, err := n.kv.Put(ctx, healthKey(n.id), []byte(time.Now().UTC().Format(time.RFC3339Nano)))
	switch {
	case err == nil:
		n.probeFailed = time.Time{}
		return nil
	case n.probeFailed.IsZero():
		n.probeFailed = time.Now()
	}
	if time.Since(n.probeFailed) < unreadyAfter {
		return nil
	}
	return fmt.Errorf("session directory: no write to NATS JetStream for %v: %w", time.Since(n.probeFailed).Round(time.Second), err)
}

// unreadyAfter is how long the readiness probe's writes must fail before
// the node says it is not ready: longer than a JetStream leader election.
const unreadyAfter = 3 * time.Second

// healthKey is a node's readiness probe key in the directory bucket. Its
// dot keeps it out of the directory's watch, which takes single-token keys
// (peer ids, which have no dot) only.
func healthKey(node string) string { return "health." + node }
