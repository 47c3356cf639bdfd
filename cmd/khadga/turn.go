package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/khadga/khadga/certs"
	"github.com/khadga/khadga/signaling/store"
	"github.com/khadga/khadga/signaling/store/kvstore"
	"github.com/khadga/khadga/turn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// turnOff as --turn-listen turns the embedded TURN server off in
// `khadga serve`.
const turnOff = "off"

// turnConfig are the --turn-* settings, shared by `khadga serve` (embedded
// TURN), `khadga turn` (standalone) and `khadga turn-credentials`, so that
// all read the same flags and KHADGA_TURN_* variables. The defaults are
// package turn's (TestDefaultsAreTurnDefaults).
type turnConfig struct {
	Listen          string        `yaml:"turn-listen" default:"0.0.0.0:3478" usage:"TURN UDP and TCP listen address (\"off\": khadga serve runs without its embedded TURN server)"`
	TLSListen       string        `yaml:"turn-tls-listen" default:"0.0.0.0:5349" usage:"TURNS (TLS) listen address, used when there is a certificate: --turn-tls-cert, or in khadga serve the HTTPS one (--tls-cert or --acme-domain)"`
	TLSCert         string        `yaml:"turn-tls-cert" usage:"TURNS certificate file (PEM chain); re-read when it changes and on SIGHUP"`
	TLSKey          string        `yaml:"turn-tls-key" usage:"TURNS private key file (PEM)"`
	PublicIP        string        `yaml:"turn-public-ip" usage:"public IPv4 address given out for relays (behind NAT, in containers), or auto: ask --turn-public-ip-stun, and again every --turn-public-ip-interval; default: the listen IP, else the host's first IPv4 address that is not loopback or link-local (a private one on a LAN)"`
	PublicIPSTUN    string        `yaml:"turn-public-ip-stun" usage:"STUN server (host:port) that --turn-public-ip auto asks for the public IP"`
	PublicIPEvery   time.Duration `yaml:"turn-public-ip-interval" default:"5m" usage:"how often --turn-public-ip auto asks again (a changed address goes to new allocations)"`
	URLHost         string        `yaml:"turn-url-host" usage:"host name put in turn:/turns: URLs (the certificate's name for TURNS); default: the public IP"`
	Ports           portRange     `yaml:"turn-ports" default:"49152-65535" usage:"relay port range MIN-MAX"`
	Realm           string        `yaml:"turn-realm" default:"khadga" usage:"TURN realm"`
	Secrets         []string      `yaml:"turn-secret" usage:"TURN REST shared secret, comma-separated for several (any accepted, the first mints); prefer the environment or --turn-secret-file"`
	SecretFile      string        `yaml:"turn-secret-file" usage:"file with TURN secrets, one a line (# comments), after any --turn-secret; re-read when it changes and on SIGHUP (put the new secret first, keep the old one for --turn-ttl)"`
	TTL             time.Duration `yaml:"turn-ttl" default:"12h" usage:"lifetime of minted TURN credentials"`
	AllowPeers      []string      `yaml:"turn-allow-peer" usage:"peer CIDR allowed even if denied otherwise, built-in ranges included (repeatable)"`
	DenyPeers       []string      `yaml:"turn-deny-peer" usage:"peer CIDR denied on top of the built-in private and reserved ranges (repeatable)"`
	UserQuota       int           `yaml:"turn-user-quota" default:"10" usage:"allocations per user (-1: no cap)"`
	TotalQuota      int           `yaml:"turn-total-quota" usage:"allocations on the server (0: the relay port range, -1: no cap)"`
	PermissionQuota int           `yaml:"turn-permission-quota" default:"64" usage:"peer addresses per allocation (-1: no cap)"`
	ChannelQuota    int           `yaml:"turn-channel-quota" default:"64" usage:"channels (ChannelBind) per allocation (-1: no cap)"`
	UserBandwidth   int           `yaml:"turn-user-bandwidth" default:"16777216" usage:"bytes per second one user's allocations may relay on this server, each direction apart; more is dropped (-1: no cap)"`
	Sockets         int           `yaml:"turn-sockets" usage:"UDP sockets on the listen port (SO_REUSEPORT); 0: one per CPU"`
}

// portRange is a relay port range, written MIN-MAX.
type portRange struct{ Min, Max int }

func (r *portRange) UnmarshalText(b []byte) error {
	a, z, ok := strings.Cut(string(b), "-")
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(z))
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("%q: want MIN-MAX", b)
	}
	r.Min, r.Max = lo, hi
	return nil
}

func (r portRange) MarshalText() ([]byte, error) { return fmt.Appendf(nil, "%d-%d", r.Min, r.Max), nil }

// publicIPAuto as --turn-public-ip asks a STUN server for it.
const publicIPAuto = "auto"

// enabled reports whether the embedded TURN server should run.
func (c *turnConfig) enabled() bool { return c.Listen != turnOff }

// maxSecretFile bounds the secret file: a few lines by nature.
const maxSecretFile = 64 << 10

// server turns the settings into a turn.Config, without a certificate.
// Secrets may come out empty: `khadga serve` then adds the one kept in its
// store, and `khadga turn` refuses to start.
func (c *turnConfig) server(log *slog.Logger, reg prometheus.Registerer) (turn.Config, error) {
	secrets, err := c.readSecrets()
	publicIP, stunServer := c.PublicIP, ""
	if publicIP == publicIPAuto {
		publicIP, stunServer = "", c.PublicIPSTUN
	}
	return turn.Config{
		PublicIP:        publicIP,
		PublicIPSTUN:    stunServer,
		PublicIPEvery:   c.PublicIPEvery,
		URLHost:         c.URLHost,
		RelayMinPort:    c.Ports.Min,
		RelayMaxPort:    c.Ports.Max,
		Realm:           c.Realm,
		Secrets:         secrets,
		CredentialTTL:   c.TTL,
		AllowPeers:      c.AllowPeers,
		DenyPeers:       c.DenyPeers,
		UserQuota:       c.UserQuota,
		TotalQuota:      c.TotalQuota,
		PermissionQuota: c.PermissionQuota,
		ChannelQuota:    c.ChannelQuota,
		UserBandwidth:   c.UserBandwidth,
		Logger:          log,
		Registerer:      reg,
	}, err
}

// listenConfig is where the TURN server listens; withTLS adds the TURNS
// listener.
func (c *turnConfig) listenConfig(withTLS bool) turn.ListenConfig {
	lc := turn.ListenConfig{Addr: c.Listen, UDPSockets: c.Sockets}
	if withTLS {
		lc.TLSAddr = c.TLSListen
	}
	return lc
}

// validate checks every TURN setting that can be checked before starting.
// storeSecret says the store supplies a secret when none is given.
func (c *turnConfig) validate(storeSecret bool) error {
	if c.Listen == turnOff {
		if storeSecret {
			return nil // the embedded server is off
		}
		return errors.New("--turn-listen is off, which only khadga serve takes (it runs without its embedded TURN server)")
	}
	cfg, err := c.server(nil, nil)
	errs := []error{err}
	switch {
	case c.PublicIP == publicIPAuto && c.PublicIPSTUN == "":
		errs = append(errs, errors.New("--turn-public-ip auto needs --turn-public-ip-stun HOST:PORT, the STUN server to ask"))
	case c.PublicIP != publicIPAuto && c.PublicIPSTUN != "":
		errs = append(errs, errors.New("--turn-public-ip-stun is used only with --turn-public-ip auto"))
	}
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		errs = append(errs, errors.New("--turn-tls-cert and --turn-tls-key go together"))
	case c.TLSCert != "":
		if _, err := certs.NewFileSource(c.TLSCert, c.TLSKey, nil); err != nil {
			errs = append(errs, fmt.Errorf("--turn-tls-cert/--turn-tls-key: %w", err))
		}
	}
	if len(cfg.Secrets) == 0 && !storeSecret {
		errs = append(errs, errNoTURNSecret)
	}
	if len(cfg.Secrets) == 0 {
		cfg.Secrets = [][]byte{[]byte("checked elsewhere")}
	}
	errs = append(errs, c.validateLimits(), cfg.Validate(), c.listenConfig(c.TLSCert != "").Validate())
	return errors.Join(errs...)
}

// validateLimits refuses, by flag name, the values that package turn
// would silently take for something else: a zero quota, bandwidth or
// duration means its default there (10 allocations for
// --turn-user-quota 0, which is coturn's "no limit"), and any negative
// quota no cap, though only -1 says so. Negative durations package turn
// refuses itself.
func (c *turnConfig) validateLimits() error {
	var errs []error
	capped := func(flag string, v int) {
		if v == 0 || v < -1 {
			errs = append(errs, fmt.Errorf("--%s %d: want at least 1, or -1 for no cap", flag, v))
		}
	}
	capped("turn-user-quota", c.UserQuota)
	capped("turn-permission-quota", c.PermissionQuota)
	capped("turn-channel-quota", c.ChannelQuota)
	capped("turn-user-bandwidth", c.UserBandwidth)
	if c.TotalQuota < -1 {
		errs = append(errs, fmt.Errorf("--turn-total-quota %d: want at least 1, 0 for the relay port range, or -1 for no cap", c.TotalQuota))
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"turn-ttl", c.TTL}, {"turn-public-ip-interval", c.PublicIPEvery}} {
		if d.v == 0 {
			errs = append(errs, fmt.Errorf("--%s 0s: want more than 0", d.flag))
		}
	}
	return errors.Join(errs...)
}

// readSecrets returns the --turn-secret values, then the lines of
// --turn-secret-file.
func (c *turnConfig) readSecrets() ([][]byte, error) {
	var out [][]byte
	for _, s := range c.Secrets {
		out = append(out, []byte(s))
	}
	if c.SecretFile == "" {
		return out, nil
	}
	f, err := os.Open(c.SecretFile)
	if err != nil {
		return out, fmt.Errorf("--turn-secret-file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxSecretFile))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, []byte(line))
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("--turn-secret-file %s: %w", c.SecretFile, err)
	}
	return out, nil
}

// turnSecretName is the store key of the TURN secret generated on first run.
const turnSecretName = "turn-rest-secret"

// start opens the TURN listeners and starts the server: TURNS when there
// is a certificate, --turn-tls-cert's or else fallback (khadga serve's
// HTTPS one); without --turn-secret, with the secrets kept in st (nil for
// the standalone server without --nats), generated on first run, which
// `khadga turn` nodes share (through --nats, or given the secret) and
// follow when the cluster's change (turnstore.go). Closing the server
// closes the certificate source it started.
func (c *turnConfig) start(ctx context.Context, st store.Backend, fallback certs.GetCertificateFunc,
	log *slog.Logger, reg prometheus.Registerer) (*turnServer, error) {
	cfg, err := c.server(log, reg)
	if err != nil {
		return nil, err
	}
	fromStore := len(cfg.Secrets) == 0 && st != nil
	if fromStore {
		if cfg.Secrets, err = storedTURNSecrets(st); err != nil {
			return nil, err
		}
	}
	if len(cfg.Secrets) == 0 {
		return nil, errNoTURNSecret
	}
	var own *tlsSetup // --turn-tls-cert's
	if c.TLSCert != "" {
		if own, err = startCertFiles(c.TLSCert, c.TLSKey, log.With(slog.String("component", "turn-tls"))); err != nil {
			return nil, err
		}
		fallback = own.getCert
	}
	cfg.GetCertificate = fallback
	ls, err := turn.Listen(ctx, c.listenConfig(cfg.GetCertificate != nil))
	if le := (*turn.ListenError)(nil); errors.As(err, &le) {
		flag := "--turn-listen"
		if le.TLS {
			flag = "--turn-tls-listen"
		}
		err = fmt.Errorf("%s %s: %w", flag, le.Addr, err)
	}
	if err == nil {
		var srv *turn.Server
		if srv, err = turn.New(cfg, ls); err == nil { // it logs its addresses
			stop := c.followSecrets(st, fromStore, srv, cfg.Secrets, log)
			return &turnServer{Server: srv, certs: own, stopWatch: stop}, nil
		}
	}
	own.close()
	return nil, err
}

// turnServer is a running TURN server with the certificate source and the
// secret watcher it uses.
type turnServer struct {
	*turn.Server
	certs     *tlsSetup // nil without --turn-tls-cert
	stopWatch func()    // ends the --turn-secret-file and the store's watchers

	closeOnce sync.Once
	closeErr  error
}

// Close stops the secret watchers, the server, then its certificate
// source. A nil server is off. Only the first call does it (serveTURN
// closes once for its result and once deferred): the certificate
// source's stop waits for goroutines that end once, and a second wait
// would never end.
func (s *turnServer) Close() error {
	if s == nil {
		return nil
	}
	s.closeOnce.Do(func() {
		s.stopWatch()
		s.closeErr = s.Server.Close()
		s.certs.close()
	})
	return s.closeErr
}

func newTURNSecret() ([]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return []byte(base64.RawURLEncoding.EncodeToString(b)), nil
}

// turnCommandConfig is the configuration of `khadga turn`.
type turnCommandConfig struct {
	TURN    turnConfig `yaml:",inline"`
	Metrics string     `yaml:"turn-metrics" usage:"address serving /metrics, /healthz and /readyz for this TURN server (empty: none)"`
	Log     logConfig  `yaml:",inline"`
	// With --nats the secrets come from the cluster's store, and follow it.
	NATS natsConfig `yaml:",inline"`
}

func (c *turnCommandConfig) Validate() error {
	return errors.Join(c.TURN.validate(c.NATS.enabled()), c.NATS.validate())
}

var turnCommand = command("khadga turn", "khadga turn [flags]",
	"Run only the TURN server (coturn-compatible REST-secret credentials). With --nats it takes its secrets from the cluster, and follows their rotation.",
	"KHADGA_TURN_SECRET=$(openssl rand -base64 32) khadga turn --turn-public-ip 203.0.113.7 --turn-metrics 127.0.0.1:9641")

// runTurn is `khadga turn`: the TURN server alone, for operators who host
// TURN on separate machines. It shares only the secret with the signaling
// server.
func runTurn(ctx context.Context, args []string) error {
	var c turnCommandConfig
	if err := loadNoArgs(&c, turnCommand, args); err != nil {
		return err
	}
	return serveTURN(ctx, &c, c.Log.logger(), nil)
}

// errNoTURNSecret says how to give the standalone server its secret.
var errNoTURNSecret = errors.New("turn: no TURN secret: set KHADGA_TURN_SECRET, --turn-secret-file or --turn-secret " +
	"to the secret the signaling server mints credentials with")

// serveTURN runs a standalone TURN server until ctx ends. ready, if set, is
// called once it serves (tests use it to learn the ports).
func serveTURN(ctx context.Context, c *turnCommandConfig, log *slog.Logger, ready func(*turn.Server, net.Addr)) error {
	reg := newRegistry()
	// The metrics address first: a taken one stops the command before it
	// waits for NATS or the TURN server listens, rather than after.
	var metricsLn net.Listener
	if c.Metrics != "" {
		var err error
		if metricsLn, err = net.Listen("tcp", c.Metrics); err != nil {
			return fmt.Errorf("--turn-metrics: %w", err)
		}
		defer metricsLn.Close() // once serveMetrics has it, stop closes it first
	}
	var st store.Backend
	if c.NATS.enabled() {
		ns, err := c.NATS.open(ctx, "khadga turn", log, reg, kvstore.SchemaIgnore)
		if err != nil {
			return err
		}
		defer ns.close()
		st = ns.store
	}
	srv, err := c.TURN.start(ctx, st, nil, log, reg)
	if err != nil {
		return err
	}
	defer srv.Close()
	var stopping atomic.Bool
	if metricsLn != nil {
		stop := serveMetrics(metricsLn, reg, log, turnProbes(&stopping))
		defer stop()
		log.Info("TURN metrics", slog.String("url", "http://"+metricsLn.Addr().String()+"/metrics"))
	}
	if ready != nil {
		var ma net.Addr
		if metricsLn != nil {
			ma = metricsLn.Addr()
		}
		ready(srv.Server, ma)
	}
	<-ctx.Done()
	stopping.Store(true)
	log.Info("TURN server stopping", slog.Int("allocations", srv.AllocationCount()))
	return srv.Close()
}

// turnProbes are the standalone TURN server's /healthz and /readyz, on its
// --turn-metrics address: the process lives; it listens and is not
// stopping. The metrics address serves only once TURN listens. Neither
// looks at NATS: without it TURN goes on with the secrets it has.
func turnProbes(stopping *atomic.Bool) map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		"GET /healthz": func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") },
		"GET /readyz": func(w http.ResponseWriter, _ *http.Request) {
			if stopping.Load() {
				http.Error(w, "stopping", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ready\n")
		},
	}
}

// newRegistry is a Prometheus registry with the Go runtime and process
// collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// serveMetrics serves reg on ln's /metrics, and the other handlers by
// their patterns, until the returned stop is called.
func serveMetrics(ln net.Listener, reg *prometheus.Registry, log *slog.Logger, more map[string]http.HandlerFunc) (stop func()) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	for pattern, h := range more {
		mux.HandleFunc(pattern, h)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("TURN metrics server", slog.Any("err", err))
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		<-done
	}
}

// credentialsConfig is the configuration of `khadga turn-credentials`.
type credentialsConfig struct {
	TURN turnConfig    `yaml:",inline"`
	User string        `yaml:"user" usage:"user name inside the credentials (required)"`
	TTL  time.Duration `yaml:"ttl" usage:"lifetime (default: --turn-ttl)"`
}

func (c *credentialsConfig) Validate() error {
	var errs []error
	if c.User == "" {
		errs = append(errs, errors.New("turn-credentials: --user is required"))
	}
	if secrets, err := c.TURN.readSecrets(); err != nil {
		errs = append(errs, err)
	} else if len(secrets) == 0 {
		errs = append(errs, errors.New("turn-credentials: no secret: set KHADGA_TURN_SECRET, --turn-secret-file or --turn-secret"))
	} else if len(secrets[0]) < turn.MinSecretLen {
		errs = append(errs, fmt.Errorf("turn-credentials: the secret is %d bytes, want at least %d", len(secrets[0]), turn.MinSecretLen))
	}
	if _, _, err := net.SplitHostPort(c.TURN.Listen); err != nil && c.TURN.urlHost() != "" {
		errs = append(errs, fmt.Errorf("--turn-listen: %w", err))
	}
	return errors.Join(errs...)
}

var credentialsCommand = command("khadga turn-credentials", "khadga turn-credentials --user NAME [--ttl 1h] [--turn-secret S]",
	"Print TURN REST credentials (the first secret mints), and the URLs when --turn-public-ip or --turn-url-host is set.",
	"KHADGA_TURN_SECRET=$(cat turn.secret) khadga turn-credentials --user alice --ttl 1h")

// runTurnCredentials is `khadga turn-credentials`: it prints a TURN REST
// username and password for an operator to test a TURN server with.
func runTurnCredentials(_ context.Context, args []string) error {
	var c credentialsConfig
	if err := loadNoArgs(&c, credentialsCommand, args); err != nil {
		return err
	}
	return printCredentials(os.Stdout, &c, time.Now())
}

// urlHost is the host of the turn: URLs, empty when none is configured
// (or the public IP is only known to the running server).
func (c *turnConfig) urlHost() string {
	if c.URLHost != "" || c.PublicIP == publicIPAuto {
		return c.URLHost
	}
	return c.PublicIP
}

// printCredentials prints credentials for a validated c.
func printCredentials(w io.Writer, c *credentialsConfig, now time.Time) error {
	ttl := c.TTL
	if ttl <= 0 {
		ttl = c.TURN.TTL
	}
	secrets, err := c.TURN.readSecrets()
	if err != nil {
		return err
	}
	username, password, expires := turn.Mint(secrets[0], c.User, ttl, now)
	fmt.Fprintf(w, "username: %s\npassword: %s\nexpires:  %s\n", username, password, expires.UTC().Format(time.RFC3339))
	if host := c.TURN.urlHost(); host != "" {
		_, port, _ := net.SplitHostPort(c.TURN.Listen) // validated
		p, _ := strconv.Atoi(port)
		ice, _ := turn.ICEConfig{Host: host, UDPPort: p, TCPPort: p, Secret: secrets[0], TTL: ttl}.ICEServers(c.User, now)
		fmt.Fprintf(w, "urls:     %s\n", strings.Join(ice[len(ice)-1].URLs, " "))
	}
	return nil
}
