package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/khadga/khadga/internal/natsconn"
	"github.com/khadga/khadga/signaling/store/kvstore"
	"github.com/prometheus/client_golang/prometheus"
)

// natsConfig is cluster mode: with --nats, khadga serve is one node of a
// cluster and keeps its accounts in JetStream KV instead of the bbolt
// file, khadga turn takes its secrets from there, and the admin commands
// work on the cluster's store. Shared by all of them.
type natsConfig struct {
	URLs     []string `yaml:"nats" usage:"NATS server URLs, comma-separated (nats://host:4222,...): run as one node of a cluster, with accounts in JetStream KV instead of the bbolt file"`
	Creds    string   `yaml:"nats-creds" usage:"NATS credentials file (user JWT and NKey seed)"`
	CA       string   `yaml:"nats-ca" usage:"CA certificate file (PEM) that verifies the NATS servers' TLS certificates"`
	Cert     string   `yaml:"nats-cert" usage:"client certificate file (PEM) for NATS servers that require mutual TLS"`
	Key      string   `yaml:"nats-key" usage:"private key file (PEM) of --nats-cert"`
	Replicas int      `yaml:"nats-replicas" default:"1" usage:"copies of each JetStream bucket and stream: 1 for one NATS server, 3 for a three-server cluster"`
	Subject  string   `yaml:"nats-subject" default:"khadga" usage:"prefix of the cluster's subjects, buckets and streams; deployments that share one NATS system each need their own"`
	// The audit stream's bounds; the oldest events go past either.
	AuditMax    int           `yaml:"nats-audit-max" default:"100000" usage:"audit events the cluster keeps"`
	AuditMaxAge time.Duration `yaml:"nats-audit-age" default:"2160h" usage:"how long the cluster keeps an audit event"`
	// How long the revocation stream keeps revocations for nodes that
	// were away; a node away for longer has its sessions checked against
	// the store when it is back. A node sets it on the stream as it starts.
	RevocationAge time.Duration `yaml:"nats-revocation-age" default:"10m" usage:"how long the cluster keeps revocations (sign-outs, disabled users, retired keys) for a node cut off from NATS; one away longer has its sessions checked against the store when it is back. Give every node the same"`
}

// natsOpenWait bounds how long an admin command waits for NATS.
const natsOpenWait = 15 * time.Second

var validSubject = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

func (c *natsConfig) enabled() bool { return c.options("", nil).Enabled() }

// validate checks the NATS settings without connecting.
func (c *natsConfig) validate() error {
	if !c.enabled() {
		return c.options("", nil).Validate() // files without a server
	}
	errs := []error{c.options("", nil).Validate()}
	if !validSubject.MatchString(c.Subject) {
		errs = append(errs, fmt.Errorf("--nats-subject %q: 1 to 32 letters, digits, - and _", c.Subject))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("--nats-replicas %d: want 1 to 5", c.Replicas))
	}
	if c.AuditMax < 1 || c.AuditMaxAge < time.Hour {
		errs = append(errs, fmt.Errorf("--nats-audit-max %d and --nats-audit-age %v: want at least 1 and 1h", c.AuditMax, c.AuditMaxAge))
	}
	if c.RevocationAge < time.Minute || c.RevocationAge > 7*24*time.Hour {
		errs = append(errs, fmt.Errorf("--nats-revocation-age %v: want 1m to 168h", c.RevocationAge))
	}
	return errors.Join(errs...)
}

func (c *natsConfig) options(name string, log *slog.Logger) natsconn.Options {
	return natsconn.Options{URLs: c.URLs, Creds: c.Creds, CAFile: c.CA, CertFile: c.Cert, KeyFile: c.Key,
		Name: name, Logger: log}
}

// natsStore is a connection to the cluster with the store on it.
type natsStore struct {
	conn  *natsconn.Conn
	store *kvstore.Store
}

// open connects (name identifies this process to the NATS servers) and
// opens the store, waiting for NATS until ctx ends. reg, if set, gets
// the connection's and the store's metrics. The buckets and the stream are
// made if missing but never changed: the cluster's settings are its
// nodes' (openNode), and an admin command or a TURN node run without
// --nats-replicas must not take a 3-replica cluster down to one copy.
// schema is what the process does with the cluster's schema version:
// kvstore.SchemaCheck for one that rewrites records (migrate), SchemaSame
// for an admin command, SchemaIgnore for a TURN node, SchemaReplace for a
// restore.
func (c *natsConfig) open(ctx context.Context, name string, log *slog.Logger, reg prometheus.Registerer,
	schema kvstore.Schema) (*natsStore, error) {
	return c.connect(ctx, name, log, reg, true, schema)
}

// openNode is open for a node (khadga serve), whose --nats-replicas and
// audit bounds are the cluster's: it brings the buckets and the stream to
// them.
func (c *natsConfig) openNode(ctx context.Context, name string, log *slog.Logger, reg prometheus.Registerer) (*natsStore, error) {
	return c.connect(ctx, name, log, reg, false, kvstore.SchemaCheck)
}

func (c *natsConfig) connect(ctx context.Context, name string, log *slog.Logger, reg prometheus.Registerer, keep bool,
	schema kvstore.Schema) (*natsStore, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	conn, err := natsconn.Connect(c.options(name, log.With(slog.String("component", "nats"))))
	if err != nil {
		return nil, err
	}
	if reg != nil {
		if err := conn.Register(reg); err != nil {
			conn.Close()
			return nil, err
		}
	}
	st, err := kvstore.Open(ctx, conn, kvstore.Options{Prefix: c.Subject, Replicas: c.Replicas, KeepSettings: keep, Schema: schema, Registerer: reg,
		AuditMax: c.AuditMax, AuditMaxAge: c.AuditMaxAge, Logger: log.With(slog.String("component", "kvstore"))})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("opening the store on NATS: %w", c.replicasHint(err))
	}
	return &natsStore{conn: conn, store: st}, nil
}

// JetStream's error codes for more replicas than its servers can keep.
const (
	jsErrReplicasNotClustered  jetstream.ErrorCode = 10074 // "replicas > 1 not supported in non-clustered mode"
	jsErrInsufficientResources jetstream.ErrorCode = 10023
)

// replicasHint names --nats-replicas in err when JetStream refused a
// bucket or stream for more replicas than it has servers: its own words
// ("replicas > 1 not supported in non-clustered mode", "insufficient
// resources") do not say which setting to change.
func (c *natsConfig) replicasHint(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jsErrReplicasNotClustered || apiErr.ErrorCode == jsErrInsufficientResources) {
		return fmt.Errorf("--nats-replicas %d: %w (want at most the number of NATS servers with JetStream: 1 for one server, 3 for three)", c.Replicas, err)
	}
	return err
}

// close closes the store, then the connection. A nil natsStore is off.
func (n *natsStore) close() {
	if n != nil {
		n.store.Close()
		n.conn.Close()
	}
}
