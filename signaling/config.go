package signaling

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/khadga/khadga/internal/cidr"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Server. The zero value, after defaults, is a working
// single-node server with its data under ./khadga-data.
type Config struct {
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// DataDir holds the bbolt store (khadga.db). Created on first run.
	DataDir string
	// Store is the store to serve from, already open; nil means New opens
	// the one in DataDir. Either way the server closes it.
	Store store.Backend
	// Cluster, when set, makes this server one node of a cluster (khadga
	// serve --nats): the hub reaches the other nodes' sessions through it,
	// revocations reach every node, and shutdown drains this node's
	// sessions to the others. Nil: a single node.
	Cluster Cluster
	// AdminListener, when set, serves the admin commands (`khadga user`,
	// `token`, `backup`) while the server holds the store: the caller opens
	// it (admin.Listen makes the 0600 unix socket) and the server closes
	// it. Nil means no admin socket.
	AdminListener net.Listener
	// AllowedOrigins lists browser origins (scheme://host[:port]) besides
	// the server's own whose pages may open the WebSocket, call the API and
	// import the SDK (CORS; see cors.go).
	AllowedOrigins []string
	// AccessTTL is the lifetime of access tokens (default 15 min).
	AccessTTL time.Duration
	// RefreshTTL is the lifetime of a refresh-token family (default 30 days).
	RefreshTTL time.Duration
	// BotAccessTTL is the lifetime of the access tokens a bot refresh
	// token (`khadga token --refresh`) buys (default AccessTTL). A bot
	// renews them before they expire.
	BotAccessTTL time.Duration
	// ResumeWindow is how long a dropped session waits for its client (default 30 s).
	ResumeWindow time.Duration
	// ReadLimit is the largest WebSocket message accepted (default 64 KiB).
	ReadLimit int64
	// MaxRoomsPerSession and MaxRoomMembers bound rooms (defaults 16 and
	// 50). Members are counted in people: a user's sessions count once.
	MaxRoomsPerSession int
	MaxRoomMembers     int
	// MaxOwnedRooms caps the rooms one user may claim (default 10), so
	// that claiming cannot squat names in bulk.
	MaxOwnedRooms int
	// MessageRate is each connection's sustained message rate per second
	// (default 200), with bursts of MessageBurst (default 400).
	MessageRate  float64
	MessageBurst int
	// SignalBytesRate and SignalBurstBytes limit the signal bytes each
	// connection sends per second (defaults: the hub's, 512 KiB/s and 2 MiB).
	SignalBytesRate  int
	SignalBurstBytes int
	// MaxConnsPerUser caps one user's open WebSockets and sessions
	// (default: the hub's, 32), on every node of a cluster together.
	MaxConnsPerUser int
	// PresenceScope is "global" (default: everyone online, the first
	// MaxPresenceList listed) or "rooms" (the peers in rooms one shares).
	PresenceScope string
	// MaxPresenceList caps a presence list (default: the hub's, 100).
	MaxPresenceList int
	// ICEServers returns the STUN/TURN servers for a user's welcome, with the
	// expiry of their credentials. Nil means none (the embedded TURN server
	// fills it in khadga serve).
	ICEServers func(user string) ([]proto.ICEServer, time.Time)
	// LoginLimits tunes the login rate limiter; zero fields take auth's
	// defaults (slow down after 5 failures, refuse after 10 in 15 min).
	LoginLimits auth.LimiterOptions
	// TURNAllocations reports the embedded TURN server's active allocations
	// for the admin status page; nil means no TURN.
	TURNAllocations func() int
	// Password sets the argon2id cost; the zero value is auth's default.
	Password auth.Params
	// PasswordWorkers bounds the password hashes and checks (registration,
	// login, anything that takes a password) running at once; each holds
	// Password.Memory. Four times as many wait, for up to 5 s; beyond
	// that the server answers 503. Default: the number of cores.
	PasswordWorkers int
	// RegistrationsPerHour caps new accounts per client address (IPv6 per
	// /64), in bursts of as many (default 10).
	RegistrationsPerHour int
	// TicketsPerUser and TicketsPerAddr cap the unredeemed WebSocket
	// tickets of one user and of one address (defaults 8 and 64).
	TicketsPerUser int
	TicketsPerAddr int
	// Registerer receives the server's Prometheus metrics; nil means none.
	Registerer prometheus.Registerer
	// Gatherer, when set, is served on /metrics. If MetricsToken is set,
	// only to clients presenting it as a bearer token (loopback included);
	// otherwise to loopback clients only.
	Gatherer     prometheus.Gatherer
	MetricsToken string
	// MetricsListener, when set, serves /metrics there instead of on the
	// main listener (with MetricsToken if set, else to anyone who can
	// reach that address).
	MetricsListener net.Listener
	// TrustedProxies are the reverse proxies (CIDRs) whose X-Forwarded-For
	// names the client, for login limits, the audit log and /metrics.
	TrustedProxies []string
	// SMTPURL (smtp://user:pass@host:port) turns on the email check at
	// registration: accounts stay unverified until the emailed link is
	// opened. SMTPFrom is the sender address. The URL is never logged.
	SMTPURL  string
	SMTPFrom string
	// PublicURL is the server's address as users reach it. Emailed links
	// are built from it, never from a request's Host header (which the
	// client chooses), so it is required with SMTPURL.
	PublicURL string
	// Now is the clock of tokens and tickets; nil means time.Now. Tests
	// move it to expire tokens without waiting.
	Now func() time.Time
	// TLS, when set, makes the listener serve HTTPS and WSS with it (HSTS
	// is then sent on every answer). See package certs for files and ACME.
	TLS *tls.Config
	// HeaderTimeout bounds how long a client may take to send its request
	// headers, against slowloris (default 10 s).
	HeaderTimeout time.Duration
	// MaxConnsPerAddr caps the connections from one client address (an
	// IPv4 address, an IPv6 /56) that are not WebSockets: in their TLS
	// handshake, sending a request, waiting for its answer or idle
	// between requests (default 256), and all addresses together at 16
	// times that. Past it a new connection is closed at once, plain HTTP
	// after a 429. Loopback, private and link-local addresses and
	// TrustedProxies are not counted: a reverse proxy guards its own
	// clients.
	MaxConnsPerAddr int
	// ShutdownGrace bounds how long Serve waits for clients to get their
	// reconnect notice when its context ends (default 5 s).
	ShutdownGrace time.Duration

	// countLoopback counts loopback clients against MaxConnsPerAddr
	// (tests: they have no other address).
	countLoopback bool
}

// StorePath is the bbolt file inside DataDir.
func (c Config) StorePath() string { return filepath.Join(c.DataDir, "khadga.db") }

// WithDefaults returns c with every zero field set to its default, as New
// applies them, so that a caller can Validate before New.
func (c Config) WithDefaults() Config {
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.DataDir == "" {
		c.DataDir = "khadga-data"
	}
	setDefault(&c.AccessTTL, 15*time.Minute)
	setDefault(&c.RefreshTTL, 30*24*time.Hour)
	setDefault(&c.BotAccessTTL, c.AccessTTL)
	setDefault(&c.ResumeWindow, 30*time.Second)
	setDefault(&c.ShutdownGrace, 5*time.Second)
	setDefault(&c.HeaderTimeout, 10*time.Second)
	setDefault(&c.MaxConnsPerAddr, 256)
	setDefault(&c.ReadLimit, proto.MaxMessageSize)
	setDefault(&c.MaxRoomsPerSession, 16)
	setDefault(&c.MaxRoomMembers, 50)
	setDefault(&c.MaxOwnedRooms, 10)
	setDefault(&c.MessageRate, 200)
	setDefault(&c.MessageBurst, 400)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Password == (auth.Params{}) {
		c.Password = auth.DefaultParams
	}
	setDefault(&c.PasswordWorkers, runtime.GOMAXPROCS(0))
	setDefault(&c.RegistrationsPerHour, 10)
	setDefault(&c.TicketsPerUser, auth.DefaultTicketsUser)
	setDefault(&c.TicketsPerAddr, auth.DefaultTicketsAddr)
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	for _, o := range c.AllowedOrigins {
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") || strings.Contains(o, "*") {
			errs = append(errs, fmt.Errorf("allowed origin %q must be scheme://host[:port]", o))
		}
	}
	if c.AccessTTL < time.Minute || c.AccessTTL > auth.MaxAccessTTL {
		errs = append(errs, fmt.Errorf("access token lifetime %v must be between 1m and %v", c.AccessTTL, auth.MaxAccessTTL))
	}
	// A BotAccessTTL that follows AccessTTL (the default) is within its
	// range when AccessTTL is in its narrower one: checking it again would
	// report AccessTTL's problem twice, once under a name no flag has.
	if c.BotAccessTTL != c.AccessTTL && (c.BotAccessTTL < time.Second || c.BotAccessTTL > auth.MaxAccessTTL) {
		errs = append(errs, fmt.Errorf("bot access token lifetime %v must be between 1s and %v", c.BotAccessTTL, auth.MaxAccessTTL))
	}
	if c.RefreshTTL < c.AccessTTL {
		errs = append(errs, fmt.Errorf("refresh lifetime %v is shorter than the access lifetime %v", c.RefreshTTL, c.AccessTTL))
	}
	for _, p := range c.TrustedProxies {
		if _, err := cidr.Parse(p); err != nil {
			errs = append(errs, fmt.Errorf("trusted proxy: %w", err))
		}
	}
	if c.SMTPURL != "" {
		if _, err := newMailer(c.SMTPURL, c.SMTPFrom); err != nil {
			errs = append(errs, err)
		}
	}
	if c.SMTPURL != "" && c.PublicURL == "" {
		errs = append(errs, errors.New("the email check (SMTP URL) needs the public URL (--public-url https://chat.example.org): "+
			"emailed links are built from it, never from a request's Host header, which anyone can set"))
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("public URL %q must be http(s)://host[:port]", c.PublicURL))
		}
	}
	if c.ResumeWindow < 0 || c.ResumeWindow > 10*time.Minute {
		errs = append(errs, fmt.Errorf("resume window %v must not be negative or over 10m", c.ResumeWindow))
	}
	if c.ReadLimit < 1024 || c.ReadLimit > 1<<20 {
		errs = append(errs, fmt.Errorf("read limit %d must be between 1 KiB and 1 MiB", c.ReadLimit))
	}
	if c.MaxRoomsPerSession < 1 || c.MaxRoomMembers < 2 || c.MaxOwnedRooms < 1 {
		errs = append(errs, errors.New("max rooms per session and max owned rooms must be at least 1, and max room members at least 2"))
	}
	if c.PasswordWorkers < 1 || c.RegistrationsPerHour < 1 || c.TicketsPerUser < 1 || c.TicketsPerAddr < 1 {
		errs = append(errs, errors.New("password workers, registrations per hour and tickets per user and address must be positive"))
	}
	if c.MaxConnsPerAddr < 1 {
		errs = append(errs, errors.New("max connections per address must be positive"))
	}
	if c.MessageRate <= 0 || c.MessageBurst < 1 {
		errs = append(errs, errors.New("message rate and burst must be positive"))
	}
	return errors.Join(errs...)
}
