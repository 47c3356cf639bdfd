// Package natsconn connects a khadga process to its NATS cluster: the
// one connection a node uses for JetStream key-value (package kvstore) and
// for the cross-node hub. cmd/khadga fills Options from --nats,
// --nats-creds and the --nats-tls-* settings; Connect returns a *Conn.
//
//	c, err := natsconn.Connect(opts) // returns at once, even if NATS is down
//	defer c.Close()
//	st, err := kvstore.Open(ctx, c, kvstore.Options{Replicas: 3})
//	... c.NATS() for core publish/subscribe, c.JetStream() for streams ...
//	if err := c.Ready(); err != nil { /* /readyz answers 503 */ }
//
// # Connection behaviour
//
// The connection never gives up: it reconnects forever, every
// ReconnectWait plus jitter, to any server of the list and any the
// cluster announces. A process may start before NATS does; Connect then
// returns a connection that is still trying. Nothing is queued while it
// is disconnected (the reconnect buffer is off): a publish fails at once,
// so that a signal bound for another node is reported to its sender
// instead of being delivered late or silently dropped. Pings every
// PingInterval find a dead server within three intervals, and a write
// that makes no progress for two intervals (a link that drops every
// packet, with the server still up) ends the connection, which then
// reconnects.
//
// # Readiness
//
// Ready reports whether the node can use NATS now: the connection is up
// and JetStream answered the last probe. The probe (an account info
// request) runs every ProbeInterval, at once after a reconnect, and
// whenever a user of JetStream calls Unavailable after a request failed
// in a way that suggests JetStream is gone (a timeout, no responders, no
// quorum). A disconnect makes Ready fail at once, and so does an
// Unavailable request; a probe of a ready connection that fails the way a
// leader election makes requests fail (unanswered, or "temporarily
// unavailable") is given electionGrace before it counts, so that losing
// one NATS server of three does not make every node flap. While Ready fails,
// kvstore refuses requests immediately (store.ErrUnavailable) instead of
// letting each one wait for its timeout, and the HTTP API answers 503.
//
// # Logging
//
// The connection's events (connect, disconnect with its reason,
// reconnect, lame duck mode, asynchronous errors such as slow consumers)
// and readiness changes go to the injected slog.Logger. So does each way
// an attempt to connect fails (a refused password or creds file, a TLS
// error, a server that does not answer), once until the next connection,
// with the settings to check; Ready says the last of them too. Server URLs are
// logged without their credentials.
package natsconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/khadga/khadga/internal/rawsock"
)

// Defaults of Options.
const (
	DefaultReconnectWait = time.Second
	DefaultPingInterval  = 5 * time.Second
	DefaultProbeInterval = 2 * time.Second
	DefaultTimeout       = 2 * time.Second
)

// Options configure the connection. Only URLs is required.
type Options struct {
	// URLs are the NATS servers (nats://, tls://, ws:// or wss://, with
	// optional user:password@). Each element may hold several,
	// comma-separated, as --nats takes them.
	URLs []string
	// Creds is a NATS credentials file (user JWT and NKey seed).
	Creds string
	// CAFile verifies the servers' certificates; CertFile and KeyFile are
	// the client certificate for servers that require mutual TLS.
	CAFile, CertFile, KeyFile string
	// Name identifies the connection in the servers' monitoring (connz).
	Name string
	// Logger receives the connection's events; nil discards them.
	Logger *slog.Logger
	// ReconnectWait is the pause between reconnect attempts (plus up to
	// as much jitter). Default DefaultReconnectWait.
	ReconnectWait time.Duration
	// PingInterval is how often the server is pinged; two unanswered
	// pings mark it dead. Default DefaultPingInterval.
	PingInterval time.Duration
	// ProbeInterval is how often JetStream is probed. Default
	// DefaultProbeInterval.
	ProbeInterval time.Duration
	// Timeout bounds a dial and a probe. Default DefaultTimeout.
	Timeout time.Duration
}

// Enabled reports whether any server is configured (cluster mode).
func (o Options) Enabled() bool { return len(o.Servers()) > 0 }

// Servers returns the server URLs, the comma-separated lists split.
func (o Options) Servers() []string {
	var out []string
	for _, u := range o.URLs {
		for _, s := range strings.Split(u, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// Validate reports every problem with the options at once. It does not
// connect. Error messages never include a URL's password.
func (o Options) Validate() error {
	var errs []error
	for _, s := range o.Servers() {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || !validScheme(u.Scheme) {
			errs = append(errs, fmt.Errorf("NATS URL %q: want nats://, tls://, ws:// or wss://host:port", Redact(s)))
		}
	}
	for _, f := range []struct{ flag, path string }{{"--nats-creds", o.Creds}, {"--nats-ca", o.CAFile},
		{"--nats-cert", o.CertFile}, {"--nats-key", o.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.flag, err))
		}
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		errs = append(errs, errors.New("--nats-cert and --nats-key go together"))
	}
	if !o.Enabled() && (o.Creds != "" || o.CAFile != "" || o.CertFile != "") {
		errs = append(errs, errors.New("NATS credentials or TLS files are set but no --nats server"))
	}
	return errors.Join(errs...)
}

func validScheme(s string) bool {
	switch s {
	case "nats", "tls", "ws", "wss":
		return true
	}
	return false
}

// Redact hides the password of a NATS URL, for messages and logs.
func Redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if i := strings.LastIndex(s, "@"); i >= 0 { // unparsable: hide everything before the host
			return "***" + s[i:]
		}
		return s
	}
	return u.Redacted()
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ReconnectWait <= 0 {
		o.ReconnectWait = DefaultReconnectWait
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = DefaultProbeInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
}

// ErrNotReady wraps the reason Ready gives when NATS cannot be used.
var ErrNotReady = errors.New("NATS not ready")

// Conn is a NATS connection with JetStream and a readiness state. It is
// safe for concurrent use.
type Conn struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	opts Options
	log  *slog.Logger

	checksMu    sync.Mutex                          // guards the three below
	checks      map[int]func(context.Context) error // AddCheck's, by id
	nextID      int
	reconnected chan struct{} // closed at the next reconnect (Reconnected)

	ready  atomic.Bool
	reason atomic.Pointer[string] // why not ready
	// dialErr is why the last attempt to connect failed (nil once one
	// succeeds), so that "disconnected" says why: a refused password
	// and a server that is down call for different fixes.
	dialErr atomic.Pointer[string]
	// dialLogged are the dialErr texts logged since the last connection
	// (at most maxDialLogged): each is logged once, not at every retry.
	dialMu     sync.Mutex
	dialLogged map[string]bool // guarded by dialMu
	rtt        atomic.Int64    // nanoseconds, of the last probe
	// failingSince is when the probe began to fail (zero while it
	// succeeds); only the prober uses it.
	failingSince time.Time
	probeCh      chan struct{} // asks the prober for a probe now
	stop         chan struct{} // closed by Close
	done         sync.WaitGroup
	once         sync.Once
}

// Connect starts the connection and returns at once: when no server
// answers yet it keeps trying in the background and Ready says why it is
// not ready. It fails only for invalid options.
func Connect(o Options) (*Conn, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if !o.Enabled() {
		return nil, errors.New("natsconn: no NATS server configured")
	}
	o.setDefaults()
	c := &Conn{opts: o, log: o.Logger, probeCh: make(chan struct{}, 1), stop: make(chan struct{}),
		reconnected: make(chan struct{})}
	c.setNotReady("connecting")
	nc, err := nats.Connect(strings.Join(o.Servers(), ","), c.natsOptions()...)
	if err != nil {
		return nil, fmt.Errorf("natsconn: %w", err)
	}
	c.nc = nc
	if c.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsconn: %w", err)
	}
	c.done.Add(1)
	go c.prober()
	if !nc.IsConnected() { // else onConnect logs and probes
		c.log.Warn("NATS not reachable yet; retrying in the background", slog.Any("servers", RedactAll(o.Servers())))
	}
	return c, nil
}

// RedactAll is Redact of each URL.
func RedactAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = Redact(s)
	}
	return out
}

// natsOptions are the client options: reconnect forever, no buffering
// while disconnected, quick dead-server detection, and slog for events.
func (c *Conn) natsOptions() []nats.Option {
	o := c.opts
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(o.ReconnectWait),
		nats.ReconnectJitter(o.ReconnectWait, o.ReconnectWait),
		nats.ReconnectBufSize(-1),
		nats.PingInterval(o.PingInterval),
		nats.MaxPingsOutstanding(2),
		// A write holds nats.go's connection lock, and pings need it: on a
		// link that takes nothing more (packets dropped, nothing closed) a
		// write waited for the default minute, and pings, probes and
		// publishes with it, while the connection said it was ready. A
		// write that makes no progress for two ping intervals fails, as two
		// unanswered pings do, and a failed write reconnects rather than
		// drop what was buffered and carry on.
		nats.FlusherTimeout(2 * o.PingInterval),
		nats.ReconnectOnFlusherError(),
		nats.Timeout(o.Timeout),
		nats.SetCustomDialer(rawDialer{&net.Dialer{Timeout: o.Timeout}}),
		nats.ConnectHandler(c.onConnect),
		nats.DisconnectErrHandler(c.onDisconnect),
		nats.ReconnectHandler(c.onReconnect),
		nats.ReconnectErrHandler(c.onDialError),
		nats.ClosedHandler(func(*nats.Conn) { c.log.Info("NATS connection closed") }),
		nats.ErrorHandler(c.onAsyncError),
		nats.LameDuckModeHandler(func(nc *nats.Conn) {
			c.log.Warn("NATS server entering lame duck mode; will reconnect elsewhere", slog.String("url", nc.ConnectedUrlRedacted()))
		}),
		nats.DiscoveredServersHandler(func(nc *nats.Conn) {
			c.log.Debug("NATS servers discovered", slog.Any("servers", RedactAll(nc.DiscoveredServers())))
		}),
	}
	if o.Creds != "" {
		opts = append(opts, nats.UserCredentials(o.Creds))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	if o.CertFile != "" {
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	return opts
}

func (c *Conn) onConnect(nc *nats.Conn) {
	c.connected()
	c.log.Info("NATS connected", slog.String("url", nc.ConnectedUrlRedacted()), slog.String("server", nc.ConnectedServerName()))
	c.ProbeNow()
}

func (c *Conn) onDisconnect(_ *nats.Conn, err error) {
	select {
	case <-c.stop:
		// Close hung up: nothing an operator need hear of (every admin
		// command with --nats ends this way).
		c.ready.Store(false)
		return
	default:
	}
	c.setNotReady("disconnected from NATS")
	if err != nil {
		c.log.Warn("NATS disconnected", slog.Any("err", err))
	} else {
		c.log.Warn("NATS disconnected")
	}
}

func (c *Conn) onReconnect(nc *nats.Conn) {
	c.connected()
	c.log.Info("NATS reconnected", slog.String("url", nc.ConnectedUrlRedacted()), slog.String("server", nc.ConnectedServerName()))
	c.checksMu.Lock()
	close(c.reconnected)
	c.reconnected = make(chan struct{})
	c.checksMu.Unlock()
	c.ProbeNow()
}

// maxDialLogged bounds the distinct connection errors logged while
// disconnected (a few servers, each failing its own way).
const maxDialLogged = 8

// onDialError records why an attempt to connect failed, and logs it the
// first time it fails that way: without it, a wrong password or
// credentials file looked like a server that is down ("NATS not
// reachable yet"), for as long as the process waited.
func (c *Conn) onDialError(_ *nats.Conn, err error) {
	if errors.Is(err, nats.ErrNoServers) {
		return // the first attempt's word for any failure; the next ones say which
	}
	why := dialReason(err)
	c.dialErr.Store(&why)
	c.dialMu.Lock()
	defer c.dialMu.Unlock()
	if c.dialLogged[why] || len(c.dialLogged) >= maxDialLogged {
		return
	}
	if c.dialLogged == nil {
		c.dialLogged = make(map[string]bool)
	}
	c.dialLogged[why] = true
	c.log.Warn("cannot connect to NATS; retrying", slog.String("reason", why))
}

// connected forgets the connection errors of the attempts before.
func (c *Conn) connected() {
	c.dialErr.Store(nil)
	c.dialMu.Lock()
	c.dialLogged = nil
	c.dialMu.Unlock()
}

// dialReason is err with the settings an operator should check. No
// connection error of nats.go holds a URL's password or a creds file's
// contents: a dial error names the host and port only.
func dialReason(err error) string {
	var verify *tls.CertificateVerificationError
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked):
		return err.Error() + " (check the user and password in --nats or KHADGA_NATS, or --nats-creds)"
	case errors.As(err, &verify), strings.Contains(err.Error(), "tls:"), strings.Contains(err.Error(), "x509:"):
		return err.Error() + " (check tls:// in --nats and --nats-ca, --nats-cert, --nats-key)"
	case strings.Contains(err.Error(), "nkeys:"), strings.Contains(err.Error(), "key pair"):
		return err.Error() + " (check --nats-creds)"
	}
	return err.Error()
}

// Reconnected returns a channel that is closed when the connection next
// comes back after a disconnect. A JetStream watch (a push consumer) may
// not survive its server's restart, and finds out only after missing
// heartbeats for many seconds; kvstore starts its watches again at once
// when this fires.
func (c *Conn) Reconnected() <-chan struct{} {
	c.checksMu.Lock()
	defer c.checksMu.Unlock()
	return c.reconnected
}

func (c *Conn) onAsyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if sub != nil {
		c.log.Warn("NATS subscription error", slog.String("subject", sub.Subject), slog.Any("err", err))
		return
	}
	c.log.Warn("NATS error", slog.Any("err", err))
}

// NATS is the core connection, for publish and subscribe.
func (c *Conn) NATS() *nats.Conn { return c.nc }

// JetStream is the JetStream context over the connection.
func (c *Conn) JetStream() jetstream.JetStream { return c.js }

// Ready returns nil when the connection is up and JetStream answered its
// last probe, else an error wrapping ErrNotReady that says why.
func (c *Conn) Ready() error {
	if c.ready.Load() && c.nc.IsConnected() {
		return nil
	}
	reason := "disconnected from NATS"
	if r := c.reason.Load(); r != nil && c.nc.IsConnected() {
		reason = *r
	} else if d := c.dialErr.Load(); d != nil {
		reason += ": " + *d
	}
	return fmt.Errorf("%w: %s", ErrNotReady, reason)
}

// RTT is the round trip of the last successful JetStream probe.
func (c *Conn) RTT() time.Duration { return time.Duration(c.rtt.Load()) }

// Unavailable tells the connection that a JetStream request failed with
// err. If err suggests that JetStream is gone (a timeout, no responders,
// JetStream not enabled or without quorum), the connection is marked not
// ready at once and probed, so that other requests fail fast until the
// probe succeeds. It reports whether err was such an error.
func (c *Conn) Unavailable(err error) bool {
	if !IsUnavailable(err) {
		return false
	}
	c.setNotReady("JetStream unavailable: " + err.Error())
	c.ProbeNow()
	return true
}

// IsUnavailable reports whether err means that NATS or JetStream could
// not be reached, as opposed to an answer (not found, wrong revision).
func IsUnavailable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jetstream.JSErrCodeJetStreamNotEnabled ||
			apiErr.ErrorCode == jetstream.JSErrCodeJetStreamNotEnabledForAccount ||
			apiErr.Code == 503
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoHeartbeat) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrReconnectBufExceeded) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount)
}

// ProbeNow asks for a JetStream probe without waiting for it.
func (c *Conn) ProbeNow() {
	select {
	case c.probeCh <- struct{}{}:
	default: // one is pending already
	}
}

// prober probes JetStream every ProbeInterval and when asked.
func (c *Conn) prober() {
	defer c.done.Done()
	t := time.NewTicker(c.opts.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		case <-c.probeCh:
		}
		c.probe()
	}
}

// AddCheck adds a check to the probe: the connection is ready only while
// every check succeeds. The server answers the account info request that
// the probe makes on its own, even when JetStream has lost its quorum, so
// a user of replicated streams adds a check that needs the quorum (kvstore
// writes a key). check gets the probe's timeout. The returned function
// removes it.
func (c *Conn) AddCheck(check func(ctx context.Context) error) (remove func()) {
	c.checksMu.Lock()
	defer c.checksMu.Unlock()
	if c.checks == nil {
		c.checks = make(map[int]func(context.Context) error)
	}
	id := c.nextID
	c.nextID++
	c.checks[id] = check
	c.ProbeNow()
	return func() {
		c.checksMu.Lock()
		defer c.checksMu.Unlock()
		delete(c.checks, id)
	}
}

// electionGrace is how long a ready connection's probe may fail for
// want of a leader before the connection is marked not ready. Stopping
// one NATS server of three leaves JetStream's meta group, and each stream
// whose leader it was, without a leader for a second or a few (more when
// a server dies instead of shutting down), while every other request
// works: readiness must not flap for that. Requests that do fail still
// mark the connection at once (Unavailable), and a connection that is
// not ready gets no grace.
const electionGrace = 5 * time.Second

// probe asks JetStream for the account's info, runs the checks, and
// records the outcome. Only the prober goroutine calls it.
func (c *Conn) probe() {
	if !c.nc.IsConnected() {
		c.setNotReady("disconnected from NATS")
		return
	}
	err := c.probeOnce()
	switch {
	case err == nil:
		c.failingSince = time.Time{}
		if !c.ready.Swap(true) {
			c.log.Info("NATS JetStream ready", slog.String("url", c.nc.ConnectedUrlRedacted()), slog.Duration("rtt", c.RTT()))
		}
		return
	case c.failingSince.IsZero():
		c.failingSince = time.Now()
	}
	if c.ready.Load() && electing(err) && time.Since(c.failingSince) < electionGrace {
		c.log.Debug("NATS probe failed; waiting out a leader election", slog.Any("err", err))
		return
	}
	c.setNotReady("JetStream unavailable: " + err.Error())
}

// probeOnce asks JetStream for the account's info and runs the checks.
func (c *Conn) probeOnce() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	defer cancel()
	start := time.Now()
	if _, err := c.js.AccountInfo(ctx); err != nil {
		return err
	}
	c.rtt.Store(int64(time.Since(start)))
	c.checksMu.Lock()
	checks := slices.Collect(maps.Values(c.checks))
	c.checksMu.Unlock()
	for _, check := range checks {
		if err := check(ctx); err != nil {
			return err
		}
	}
	return nil
}

// jsClusterNotAvailable is the JetStream API's error code for "JetStream
// system temporarily unavailable", which a group's members answer while
// it has no leader (nats-server's JSClusterNotAvailErr; nats.go has no
// constant for it).
const jsClusterNotAvailable jetstream.ErrorCode = 10008

// Leaderless reports whether err means that a JetStream request found no
// leader to act on it: nobody answered, or a replica said that its group
// has none. Nothing acted on such a request, so it is safe to send again
// once a leader is elected.
func Leaderless(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, nats.ErrNoResponders) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jsClusterNotAvailable
}

// electing reports whether a probe's err may come from a leader
// election: no leader, or a request that an unelected leader left
// unanswered until its timeout.
func electing(err error) bool {
	return Leaderless(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
}

func (c *Conn) setNotReady(reason string) {
	c.reason.Store(&reason)
	select {
	case <-c.stop:
		c.ready.Store(false) // closing: a probe in flight failed with it
		return
	default:
	}
	if c.ready.Swap(false) {
		c.log.Warn("NATS not ready", slog.String("reason", reason))
	}
}

// WaitReady waits until Ready succeeds or ctx ends, probing every
// ProbeInterval meanwhile.
func (c *Conn) WaitReady(ctx context.Context) error {
	t := time.NewTicker(c.opts.ProbeInterval / 4)
	defer t.Stop()
	for {
		err := c.Ready()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-t.C:
		}
	}
}

// Close closes the connection and stops the prober; it waits for the
// prober to return. It is safe to call more than once.
func (c *Conn) Close() {
	c.once.Do(func() {
		close(c.stop)
		c.nc.Close()
		c.done.Wait()
	})
}

// rawDialer dials NATS servers over TCP sockets that read and write with
// raw system calls where the platform has them (rawsock): a node's NATS
// connection carries every cross-node signal twice, and a system call made
// the usual way wakes the runtime's sysmon thread, which then polls every
// 20 µs for a millisecond: at a few thousand signals a second that was
// the largest single cost of an otherwise idle node.
type rawDialer struct{ d *net.Dialer }

func (r rawDialer) Dial(network, address string) (net.Conn, error) {
	c, err := r.d.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return rawsock.Wrap(c), nil
}
