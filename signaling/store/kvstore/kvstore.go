// Package kvstore implements the store contract (store.Backend) on NATS
// JetStream key-value buckets, for a cluster of khadga nodes that share
// their accounts (`khadga serve --nats`). Package storetest's conformance
// suite runs against it and against bbolt.
//
// # Buckets
//
// With the default prefix "khadga":
//
//	khadga-accounts      user name -> {"user": User, "families": [Family...], "rooms": [Room...]}
//	khadga-families      family id -> user name (an index, each entry with a TTL)
//	khadga-rooms         room name -> {"name", "owner"} (an index: see rooms.go)
//	khadga-signing-keys  key id    -> SigningKey
//	khadga-bot-tokens    token id  -> BotToken
//	khadga-secrets       name      -> {"name", "value" (base64)}
//	khadga-health        "probe"   -> the time of the last readiness write
//	                     "schema"  -> the highest store.SchemaVersion of any khadga that opened the buckets
//	khadga-audit         a stream (not a bucket) on subject khadga.audit
//
// Every bucket keeps one revision per key, on file storage, with
// Options.Replicas copies (1 for a single NATS server, 3 in a three-server
// cluster). Names become keys by keeping ASCII letters, digits, '-' and
// '_' and writing every other byte as '=' and two hex digits, so any name
// the store accepts is a valid key, two names never share one, and keys
// stay readable in `nats kv ls`.
//
// # One atomic step
//
// KV has no transactions across keys, so the records are laid out for
// every change to be one write of one key. A user's refresh-token
// families live in the user's own record: creating one (with the cap on
// families per user), rotating, revoking one or all, and deleting the
// account with all its sessions are each one compare-and-swap. The
// families bucket only maps a family id to its user; its entries are
// written before the family and expire on their own (KV per-key TTL), so
// an entry whose family is gone just means "not found".
//
// A read-modify-write reads the record and its revision, applies the
// change, and writes with Update(key, value, revision): if another node
// wrote the record in between, the write fails and the step starts again
// from a fresh read, with a jittered back-off, up to maxAttempts times
// (then store.ErrConflict). This is what keeps refresh rotation atomic
// across nodes: two nodes presenting the same refresh token both read
// revision r; one writes r+1; the other's write fails, it reads again,
// finds the secret already rotated away, and so revokes the family, as
// the reuse rule says. Exactly one of them succeeds.
//
// # Availability
//
// Every method first asks the connection whether NATS and JetStream are
// ready (natsconn.Conn.Ready) and fails at once with store.ErrUnavailable
// if not; each then gets Options.OpTimeout for all its requests. A request
// that times out or finds no JetStream marks the connection not ready, so
// that the methods after it fail fast until the connection's probe
// succeeds again. One failure is waited out instead: a request that finds
// leader for its bucket (no responders, or "JetStream system temporarily
// unavailable"), which is what a bucket's requests find for a second or a
// few while its replicas elect a new leader, is sent again for up to
// electionWait (nobody acted on it, so sending it again is safe).
//
// The store adds two things to the probe. A write (the health bucket): a
// NATS server that has lost the quorum of its cluster still answers reads
// from its replica, but a node must not count as ready when it cannot
// write a login. And, for a connection that is not ready, a read from
// every bucket's leader: each bucket is a stream that elects its leader
// on its own, so after the quorum returns one bucket may be writable
// while another still has no leader, and a node must not become ready
// while a join cannot read its room. (A ready connection skips those
// reads: a bucket electing a new leader after one server of three
// stopped is waited out by its requests.)
//
// # Schema version
//
// The records are the bbolt store's (store.User and the others), so they
// share its schema version, store.SchemaVersion: Open records it in the
// health bucket, raising an older one by compare-and-swap, and refuses
// buckets that a newer khadga opened (store.ErrSchemaTooNew), whose
// records may hold fields this binary would drop when it rewrites them.
// Two kinds of process are let through instead (Options.Schema): one
// that only reads the TURN secrets (SchemaIgnore), whom no version
// concerns, so that TURN nodes keep starting beside signaling nodes of
// another release and never lock those out; and a restore
// (SchemaReplace), which replaces every record, so that Clear records
// its version: the way back to an older release. An admin command
// (SchemaSame) raises no version: it may run with another release than
// the nodes, and is refused by nodes of an older one (ErrOtherRelease).
//
// Watches (WatchSigningKeys, WatchSecret) start again from the last
// revision they saw whenever the connection comes back, so a change made
// during an outage reaches every node once NATS returns.
package kvstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/khadga/khadga/internal/natsconn"
	"github.com/khadga/khadga/signaling/store"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Options.
const (
	DefaultPrefix      = "khadga"
	DefaultReplicas    = 1
	DefaultAuditMaxAge = 90 * 24 * time.Hour
	DefaultOpTimeout   = 5 * time.Second
	// listTimeout bounds a method that reads a whole bucket (ListUsers,
	// PurgeExpired, backups).
	listTimeout = 2 * time.Minute
	// maxRecord bounds a value in the buckets: an account with
	// MaxFamiliesPerUser families fits many times over.
	maxRecord = 256 << 10
	// maxFamiliesPerUser bounds Options.MaxFamiliesPerUser so that an
	// account record stays well under maxRecord.
	maxFamiliesPerUser = 500
	// indexGrace is how long a family's index entry outlives the family's
	// expiry, so that PurgeExpired finds and counts the family first.
	indexGrace = 24 * time.Hour
)

// indexMarkerTTL is how long the families bucket keeps the marker of an
// index entry that was purged (dropIndex) or expired, which is what a
// reader finds in its place (a variable for tests).
var indexMarkerTTL = time.Minute

// Options configure a Store. The zero value is usable.
type Options struct {
	// Prefix names the buckets and the audit stream and subject, so that
	// several khadga deployments (or tests) can share one NATS cluster.
	// Letters, digits, '-' and '_'. Default DefaultPrefix.
	Prefix string
	// Replicas is how many NATS servers keep each bucket (1..5). Default
	// DefaultReplicas; use 3 in a three-server cluster. Raising it on an
	// existing deployment updates the buckets when a node opens them;
	// a lower one than the buckets have is not applied (it is logged):
	// one node started without the setting must not take every copy but
	// one away (natsconn.KeepReplicas).
	Replicas int
	// KeepSettings opens existing buckets and the stream as they are,
	// making only those missing (with Replicas and the audit bounds): for
	// a process that does not own the deployment's settings, such as an
	// admin command run without the nodes' flags.
	KeepSettings bool
	// Schema is what Open does with the schema version the buckets
	// record (schema.go). Default SchemaCheck.
	Schema Schema
	// AuditMax and AuditMaxAge bound the audit stream: the oldest events
	// are dropped past either. Defaults store.DefaultAuditMax and
	// DefaultAuditMaxAge.
	AuditMax    int
	AuditMaxAge time.Duration
	// MaxFamiliesPerUser is store.Options.MaxFamiliesPerUser (at most 500).
	MaxFamiliesPerUser int
	// OpTimeout bounds each method's requests. Default DefaultOpTimeout.
	OpTimeout time.Duration
	// Registerer receives the store's metrics; nil means none.
	Registerer prometheus.Registerer
	// Logger receives setup and failure messages; nil discards them.
	Logger *slog.Logger
}

var validPrefix = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

func (o *Options) setDefaults() error {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Replicas == 0 {
		o.Replicas = DefaultReplicas
	}
	if o.AuditMax <= 0 {
		o.AuditMax = store.DefaultAuditMax
	}
	if o.AuditMaxAge <= 0 {
		o.AuditMaxAge = DefaultAuditMaxAge
	}
	if o.MaxFamiliesPerUser <= 0 {
		o.MaxFamiliesPerUser = store.DefaultMaxFamiliesPerUser
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = DefaultOpTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if !validPrefix.MatchString(o.Prefix) {
		errs = append(errs, fmt.Errorf("prefix %q: want 1..32 letters, digits, '-' or '_'", o.Prefix))
	}
	if o.Replicas < 1 || o.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d: want 1..5", o.Replicas))
	}
	if o.MaxFamiliesPerUser > maxFamiliesPerUser {
		errs = append(errs, fmt.Errorf("max families per user %d: at most %d", o.MaxFamiliesPerUser, maxFamiliesPerUser))
	}
	if len(errs) > 0 {
		return fmt.Errorf("kvstore: %w: %w", store.ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// Store is the JetStream KV implementation of store.Backend. It is safe
// for concurrent use, and any number of Stores on any number of nodes may
// share the same buckets.
type Store struct {
	conn     *natsconn.Conn
	opts     Options
	log      *slog.Logger
	metrics  *metrics
	accounts *bucket
	families *bucket
	keys     *bucket
	secrets  *bucket
	bots     *bucket
	rooms    *bucket
	health   *bucket // one key, written by the readiness check
	audit    jetstream.Stream
	subject  string // of the audit stream
	closed   atomic.Bool
	uncheck  func() // removes the readiness check
}

var _ store.Backend = (*Store)(nil)

// Open creates the buckets and the audit stream if they do not exist (or
// updates their replicas, never lowering them, and limits), and returns
// the Store. While NATS cannot be reached it keeps trying, logging each
// failure, until ctx ends.
// The connection stays the caller's: Close does not close it.
func Open(ctx context.Context, conn *natsconn.Conn, opts Options) (*Store, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	s := &Store{conn: conn, opts: opts, log: opts.Logger, subject: opts.Prefix + ".audit"}
	var err error
	if s.metrics, err = newMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	for {
		err = s.setup(ctx)
		if err == nil || !natsconn.IsUnavailable(err) && !errors.Is(err, natsconn.ErrNotReady) {
			break
		}
		if ctx.Err() != nil {
			break // given up: "waiting" would be the wrong word
		}
		s.log.Warn("waiting for NATS JetStream to create the store's buckets", slog.Any("err", err))
		if err := conn.WaitReady(ctx); err != nil {
			return nil, fmt.Errorf("kvstore: %w", err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("kvstore: %w", err)
	}
	s.uncheck = conn.AddCheck(s.check)
	return s, nil
}

// check is the store's part of the connection's readiness probe. A
// write, always: it needs the quorum of the buckets' replicas (a leader
// that has lost its quorum may still answer reads, and the account info
// that the connection asks for is answered without one). And, to become
// ready again, a read that only a leader answers from every bucket,
// since each elects its own after the quorum returns. A ready connection
// is not asked for those reads: one bucket electing a new leader after a
// server of three stopped is waited out by each request (again), not a
// reason to turn every request away.
func (s *Store) check(ctx context.Context) error {
	if _, err := s.health.Put(ctx, "probe", []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		return err
	}
	if s.conn.Ready() == nil {
		return nil
	}
	for _, b := range []*bucket{s.accounts, s.families, s.keys, s.secrets, s.bots, s.rooms} {
		if _, _, err := b.latest(ctx, "probe"); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("bucket %s: %w", b.Bucket(), err)
		}
	}
	return nil
}

// setup creates or updates every bucket and the stream.
func (s *Store) setup(ctx context.Context) error {
	if err := s.conn.WaitReady(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.OpTimeout)
	defer cancel()
	js := s.conn.JetStream()
	bucket := func(name, desc string, markerTTL time.Duration) (*bucket, error) {
		cfg := jetstream.KeyValueConfig{
			Bucket: s.opts.Prefix + "-" + name, Description: "khadga " + desc, History: 1,
			MaxValueSize: maxRecord, Storage: jetstream.FileStorage, Replicas: s.opts.Replicas,
			LimitMarkerTTL: markerTTL,
		}
		if !s.opts.KeepSettings {
			cfg.Replicas = natsconn.KeepReplicas(ctx, js, "KV_"+cfg.Bucket, cfg.Replicas, s.log)
			kv, err := natsconn.MakeKeyValue(ctx, js, cfg)
			return &bucket{kv, s.conn.NATS()}, err
		}
		kv, err := js.KeyValue(ctx, cfg.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			if kv, err = js.CreateKeyValue(ctx, cfg); errors.Is(err, jetstream.ErrBucketExists) {
				kv, err = js.KeyValue(ctx, cfg.Bucket) // made by another process meanwhile
			}
		}
		return &bucket{kv, s.conn.NATS()}, err
	}
	var err error
	if s.accounts, err = bucket("accounts", "accounts and their refresh-token families", 0); err != nil {
		return err
	}
	if s.families, err = bucket("families", "refresh-token family id to user", indexMarkerTTL); err != nil {
		return err
	}
	if s.keys, err = bucket("signing-keys", "JWT signing keys", 0); err != nil {
		return err
	}
	if s.secrets, err = bucket("secrets", "named secrets (TURN REST secrets)", 0); err != nil {
		return err
	}
	if s.bots, err = bucket("bot-tokens", "bot tokens", 0); err != nil {
		return err
	}
	if s.rooms, err = bucket("rooms", "room name to owner (the settings are in the owner's account)", 0); err != nil {
		return err
	}
	if s.health, err = bucket("health", "readiness probe writes", 0); err != nil {
		return err
	}
	if s.opts.Schema == SchemaCheck || s.opts.Schema == SchemaSame {
		if err := s.checkSchema(ctx); err != nil {
			return err
		}
	}
	audit := jetstream.StreamConfig{
		Name: s.opts.Prefix + "-audit", Description: "khadga audit log", Subjects: []string{s.subject},
		MaxMsgs: int64(s.opts.AuditMax), MaxAge: s.opts.AuditMaxAge, Discard: jetstream.DiscardOld,
		MaxMsgSize: 8 << 10, Storage: jetstream.FileStorage, Replicas: s.opts.Replicas,
	}
	if !s.opts.KeepSettings {
		audit.Replicas = natsconn.KeepReplicas(ctx, js, audit.Name, audit.Replicas, s.log)
		s.audit, err = natsconn.MakeStream(ctx, js, audit)
		return err
	}
	if s.audit, err = js.Stream(ctx, audit.Name); errors.Is(err, jetstream.ErrStreamNotFound) {
		if s.audit, err = js.CreateStream(ctx, audit); errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s.audit, err = js.Stream(ctx, audit.Name)
		}
	}
	return err
}

// Close stops the store: later calls fail. The connection stays open.
func (s *Store) Close() error {
	if !s.closed.Swap(true) {
		s.uncheck()
	}
	return nil
}

// Ping checks that NATS and JetStream answer, for readiness probes.
func (s *Store) Ping() error {
	return s.do("ping", s.opts.OpTimeout, func(ctx context.Context) error {
		_, err := s.accounts.Status(ctx)
		return err
	})
}

// errClosed is returned by every method after Close.
var errClosed = errors.New("kvstore: closed")

// do runs one method's requests in fn: it fails at once if the store is
// closed or NATS is not ready, gives fn timeout for all its requests,
// turns a failure that means NATS is gone into store.ErrUnavailable
// (marking the connection not ready), and records the metrics.
func (s *Store) do(op string, timeout time.Duration, fn func(ctx context.Context) error) (err error) {
	start := time.Now()
	defer func() {
		if err != nil && !errors.Is(err, store.ErrUnavailable) && s.conn.Unavailable(err) {
			err = fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
		s.metrics.observe(op, time.Since(start), err)
	}()
	if s.closed.Load() {
		return errClosed
	}
	if err := s.conn.Ready(); err != nil {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return fn(ctx)
}
