package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/khadga/khadga/internal/gctune"
	"github.com/khadga/khadga/internal/natsconn"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/admin"
	"github.com/khadga/khadga/signaling/cluster"
	"github.com/khadga/khadga/signaling/store"
	"github.com/prometheus/client_golang/prometheus"
)

// serveConfig is the configuration of `khadga serve`.
type serveConfig struct {
	HTTP         string        `yaml:"http" default:"127.0.0.1:8080" usage:"HTTP listen address"`
	Data         string        `yaml:"data" default:"khadga-data" usage:"data directory (holds the bbolt store)"`
	AllowOrigins []string      `yaml:"allow-origin" usage:"extra browser origin whose pages may open the WebSocket, call the API and import the SDK, scheme://host[:port] (repeatable)"`
	AccessTTL    time.Duration `yaml:"access-ttl" default:"15m" usage:"lifetime of access tokens"`
	ResumeWindow time.Duration `yaml:"resume-window" default:"30s" usage:"how long a dropped session can resume"`
	MetricsToken string        `yaml:"metrics-token" usage:"bearer token required on every /metrics request, loopback and --metrics included (default: none: /metrics answers loopback only, or anyone on --metrics)"`
	Metrics      string        `yaml:"metrics" usage:"serve /metrics on this separate address instead of the main one (to anyone who reaches it unless --metrics-token is set)"`
	TrustProxy   []string      `yaml:"trust-proxy" usage:"reverse proxy address or CIDR whose X-Forwarded-For names the client (repeatable)"`
	SMTPURL      string        `yaml:"smtp-url" usage:"smtp://user:pass@host:port: turns on the email check at registration and password reset by email (prefer the environment: it holds a password)"`
	SMTPFrom     string        `yaml:"smtp-from" usage:"sender address of verification and password-reset emails"`
	PublicURL    string        `yaml:"public-url" usage:"the server's URL as users reach it, e.g. https://chat.example.org; required with --smtp-url (emailed links)"`
	MaxConnsAddr int           `yaml:"max-conns-per-addr" default:"256" usage:"connections from one client address (IPv6 per /56) that are not WebSockets: in the TLS handshake, sending a request or idle between requests, and 16 times that from all addresses; loopback, private and link-local addresses and --trust-proxy are not counted"`
	WS           wsConfig      `yaml:",inline"`
	Rooms        roomsConfig   `yaml:",inline"`
	Log          logConfig     `yaml:",inline"`
	TLS          tlsConfig     `yaml:",inline"`
	TURN         turnConfig    `yaml:",inline"`
	NATS         natsConfig    `yaml:",inline"`
}

var serveCommand = command("khadga serve", "khadga [serve] [flags]",
	"Run the signaling server with its embedded TURN server. khadga help lists the other commands.",
	"khadga serve --http 0.0.0.0:8080 --turn-public-ip 203.0.113.7")

// Validate reports every problem of the configuration, the signaling
// server's and the TURN server's checks included, before anything starts.
func (c *serveConfig) Validate() error {
	sc := c.signalingConfig().WithDefaults()
	return errors.Join(c.validateLimits(), sc.Validate(), c.TLS.validate(), c.TURN.validate(true), c.NATS.validate())
}

// validateLimits refuses, by flag name, the values that the signaling
// server and its hub would take for their defaults (a zero) or refuse
// only once the store, TURN and the listeners are up.
func (c *serveConfig) validateLimits() error {
	var errs []error
	atLeast := func(flag string, v, min int) {
		if v < min {
			errs = append(errs, fmt.Errorf("--%s %d: want at least %d", flag, v, min))
		}
	}
	// Only zero, which the signaling server would take for its default:
	// it refuses negative durations itself, and a second report of the
	// same value would only confuse.
	positive := func(flag string, d time.Duration) {
		if d == 0 {
			errs = append(errs, fmt.Errorf("--%s %v: want more than 0", flag, d))
		}
	}
	positive("access-ttl", c.AccessTTL)
	positive("resume-window", c.ResumeWindow)
	atLeast("max-conns-per-addr", c.MaxConnsAddr, 1)
	atLeast("max-room-members", c.Rooms.MaxRoomMembers, 2)
	atLeast("max-owned-rooms", c.Rooms.MaxOwnedRooms, 1)
	if c.WS.MessageRate <= 0 {
		errs = append(errs, fmt.Errorf("--ws-message-rate %v: want more than 0", c.WS.MessageRate))
	}
	atLeast("ws-message-burst", c.WS.MessageBurst, 1)
	atLeast("ws-signal-bytes-rate", c.WS.SignalBytesRate, 1)
	// The largest signal must fit in a burst, or it is never allowed.
	atLeast("ws-signal-burst-bytes", c.WS.SignalBurstBytes, proto.MaxMessageSize)
	atLeast("max-conns-per-user", c.WS.MaxConnsPerUser, 1)
	atLeast("presence-list", c.WS.PresenceList, 1)
	if c.WS.Presence != proto.ScopeGlobal && c.WS.Presence != proto.ScopeRooms {
		errs = append(errs, fmt.Errorf("--presence %q: want %s or %s", c.WS.Presence, proto.ScopeGlobal, proto.ScopeRooms))
	}
	return errors.Join(errs...)
}

// signalingConfig is the part of signaling.Config that settings choose.
func (c *serveConfig) signalingConfig() signaling.Config {
	return signaling.Config{
		DataDir:         c.Data,
		AllowedOrigins:  c.AllowOrigins,
		AccessTTL:       c.AccessTTL,
		ResumeWindow:    c.ResumeWindow,
		MetricsToken:    c.MetricsToken,
		TrustedProxies:  c.TrustProxy,
		SMTPURL:         c.SMTPURL,
		SMTPFrom:        c.SMTPFrom,
		PublicURL:       c.PublicURL,
		MaxConnsPerAddr: c.MaxConnsAddr,

		MessageRate:      c.WS.MessageRate,
		MessageBurst:     c.WS.MessageBurst,
		SignalBytesRate:  c.WS.SignalBytesRate,
		SignalBurstBytes: c.WS.SignalBurstBytes,
		MaxConnsPerUser:  c.WS.MaxConnsPerUser,
		PresenceScope:    c.WS.Presence,
		MaxPresenceList:  c.WS.PresenceList,

		MaxRoomMembers: c.Rooms.MaxRoomMembers,
		MaxOwnedRooms:  c.Rooms.MaxOwnedRooms,
	}
}

// roomsConfig are the limits of rooms and of their owners.
type roomsConfig struct {
	MaxRoomMembers int `yaml:"max-room-members" default:"50" usage:"people in one room (a user's sessions count once); an owner may set a lower cap"`
	MaxOwnedRooms  int `yaml:"max-owned-rooms" default:"10" usage:"rooms one user may claim as owner (PUT /api/rooms/NAME)"`
}

// wsConfig are the limits of WebSocket clients and the presence feed.
type wsConfig struct {
	MessageRate      float64 `yaml:"ws-message-rate" default:"200" usage:"WebSocket messages per second per connection (over it: rate_limited)"`
	MessageBurst     int     `yaml:"ws-message-burst" default:"400" usage:"WebSocket messages a connection may send at once above --ws-message-rate"`
	SignalBytesRate  int     `yaml:"ws-signal-bytes-rate" default:"524288" usage:"bytes of signal data per second per connection"`
	SignalBurstBytes int     `yaml:"ws-signal-burst-bytes" default:"2097152" usage:"bytes of signal data a connection may send at once above --ws-signal-bytes-rate"`
	MaxConnsPerUser  int     `yaml:"max-conns-per-user" default:"32" usage:"open WebSockets per user, and sessions (one waiting for its client to resume counts); with --nats, over every node"`
	Presence         string  `yaml:"presence" default:"global" usage:"whom presence shows: global (everyone online, the first --presence-list listed) or rooms (the peers in rooms one shares)"`
	PresenceList     int     `yaml:"presence-list" default:"100" usage:"most peers a presence list shows; more are counted"`
}

// runServe is `khadga serve`. It opens every listener and the store, and
// hands them to the TURN and signaling servers, which own them from then on.
func runServe(ctx context.Context, args []string) error {
	var c serveConfig
	if err := loadNoArgs(&c, serveCommand, args); err != nil {
		return err
	}
	log := c.Log.logger()
	tuneGC()
	tl, err := c.TLS.start(c.Data, c.httpsPort(), log)
	if err != nil {
		return err
	}
	defer tl.close()
	reg := newRegistry()
	h, err := c.open(ctx, log, reg)
	if err != nil {
		return stoppedWaiting(ctx, log, err)
	}
	defer h.nats.close() // after the server, which closes the store and the cluster node
	cfg := c.signalingConfig()
	cfg.Logger, cfg.Registerer, cfg.Gatherer = log, reg, reg
	cfg.Store, cfg.AdminListener, cfg.MetricsListener = h.store, h.admin, h.metrics
	if h.nats != nil {
		if cfg.Cluster, err = c.clusterNode(ctx, h.nats, log, reg); err != nil {
			h.close()
			return stoppedWaiting(ctx, log, err)
		}
	}
	if tl != nil {
		cfg.TLS = tl.config
	}
	if c.TURN.enabled() {
		ts, err := c.TURN.start(ctx, h.store, tl.certificate(), log.With(slog.String("component", "turn")), reg)
		if err != nil {
			h.close()
			return err
		}
		defer ts.Close()
		cfg.ICEServers, cfg.TURNAllocations = ts.ICEServers, ts.AllocationCount
	}
	srv, err := signaling.New(cfg, h.http)
	if err != nil {
		h.close()
		return err
	}
	defer srv.Close()
	where := slog.String("data", cfg.StorePath())
	if h.nats != nil {
		where = slog.Any("nats", natsconn.RedactAll(c.NATS.options("", nil).Servers()))
	}
	log.Info("khadga is running", slog.String("url", c.url(tl != nil, h.http.Addr())), where)
	return srv.Serve(ctx)
}

// stoppedWaiting is err, or nil when ctx ended (SIGTERM, SIGINT) while
// the node waited for NATS: a stop, as when it runs, not a failure to
// exit with status 1 for (which a service manager reports as one).
func stoppedWaiting(ctx context.Context, log *slog.Logger, err error) error {
	if ctx.Err() == nil {
		return err
	}
	log.Info("stopped while waiting for NATS", slog.Any("err", err))
	return nil
}

// held is what `khadga serve` opens before the servers take it over.
type held struct {
	http, metrics, admin net.Listener // metrics nil without --metrics
	store                store.Backend
	nats                 *natsStore // with --nats: the connection and store (store is its store)
}

// open listens on the HTTP and metrics addresses, opens the store (the
// bbolt file, or with --nats the cluster's, waiting for NATS until ctx
// ends), and then takes the admin socket: holding the bbolt store's lock
// first proves that no other server uses this data directory, so a socket
// file left there is stale.
func (c *serveConfig) open(ctx context.Context, log *slog.Logger, reg prometheus.Registerer) (*held, error) {
	h := &held{}
	var err error
	if h.http, err = listenTCP("--http", c.HTTP); err != nil {
		return nil, err
	}
	if c.Metrics != "" {
		if h.metrics, err = listenTCP("--metrics", c.Metrics); err != nil {
			h.close()
			return nil, err
		}
	}
	if err := c.openStore(ctx, h, log, reg); err != nil {
		h.close()
		return nil, err
	}
	if h.admin, err = admin.Listen(filepath.Join(c.Data, adminSocketName)); err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

// openStore opens the bbolt store in the data directory, or with --nats
// the cluster's.
func (c *serveConfig) openStore(ctx context.Context, h *held, log *slog.Logger, reg prometheus.Registerer) error {
	if !c.NATS.enabled() {
		st, err := store.Open(c.signalingConfig().StorePath(), store.Options{Logger: log})
		if err != nil {
			// Not into h.store: a nil *store.Store there is a non-nil
			// store.Backend, which held.close would then close.
			return err
		}
		h.store = st
		return nil
	}
	if err := os.MkdirAll(c.Data, 0o700); err != nil { // for the admin socket and certificates
		return err
	}
	ns, err := c.NATS.openNode(ctx, "khadga serve", log, reg)
	if err != nil {
		return err
	}
	h.nats, h.store = ns, ns.store
	return nil
}

// clusterNode makes this server a node of the cluster on ns's connection.
func (c *serveConfig) clusterNode(ctx context.Context, ns *natsStore, log *slog.Logger, reg prometheus.Registerer) (*cluster.Node, error) {
	node, err := cluster.New(ctx, cluster.Config{Subject: c.NATS.Subject, Bucket: c.NATS.Subject + "-sessions",
		Replicas: c.NATS.Replicas, RevocationReplay: c.NATS.RevocationAge,
		Logger: log.With(slog.String("component", "cluster")), Registerer: reg}, ns.conn.NATS())
	if err != nil {
		return nil, fmt.Errorf("joining the cluster: %w", c.NATS.replicasHint(err))
	}
	return node, nil
}

// close closes whatever was opened, when no server took it over.
func (h *held) close() {
	for _, ln := range []net.Listener{h.http, h.metrics, h.admin} {
		if ln != nil {
			ln.Close()
		}
	}
	if h.nats != nil {
		h.nats.close()
	} else if h.store != nil {
		h.store.Close()
	}
}

// url is the address to open in a browser: listening on every interface
// shows as localhost.
func (c *serveConfig) url(https bool, a net.Addr) string {
	scheme := "http"
	if https {
		scheme = "https"
	}
	s := a.String()
	if strings.HasPrefix(s, "0.0.0.0:") || strings.HasPrefix(s, "[::]:") {
		_, port, _ := net.SplitHostPort(s)
		s = "localhost:" + port
	}
	return scheme + "://" + s
}

// serverGCPercent is the garbage collector's target for khadga serve when
// GOGC is not set. A signaling server's memory is mostly idle connections,
// and relaying a signal allocates almost nothing, so a smaller heap costs
// little collection work: at 10,000 idle connections it cut the RSS from
// about 8.5 to 7.1 KiB per connection (docs/benchmarks.md).
const serverGCPercent = 50

// serverGCFloor is the least the heap may grow between collections. At
// GOGC=50 a small heap (a few MiB while the first clients connect) would
// be collected dozens of times a second; see internal/gctune. At 10,000
// idle connections GOGC=50 gives more than this, so the floor costs no
// memory there.
const serverGCFloor = 16 << 20

// tuneGC applies serverGCPercent with serverGCFloor's headroom, unless the
// operator set GOGC, which then applies as it is.
func tuneGC() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		gctune.Start(serverGCPercent, serverGCFloor)
	}
}

// httpsPort is the port users reach HTTPS on, for the ACME listener's
// redirect from plain HTTP: --public-url's when it is set (a port forward
// from 443 to another --http port is invisible from here), else --http's.
func (c *serveConfig) httpsPort() int {
	if u, err := url.Parse(c.PublicURL); err == nil && u.Scheme == "https" {
		if p, err := strconv.Atoi(u.Port()); err == nil {
			return p
		}
		return 443
	}
	if _, p, err := net.SplitHostPort(c.HTTP); err == nil {
		if n, err := strconv.Atoi(p); err == nil && n > 0 {
			return n
		}
	}
	return 443
}
