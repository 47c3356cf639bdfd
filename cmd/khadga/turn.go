package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/khadga/khadga/turn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// turnOff as --turn-listen turns the embedded TURN server off in
// `khadga serve`.
const turnOff = "off"

// turnOptions are the --turn-* flags, shared by `khadga serve` (embedded
// TURN) and `khadga turn` (standalone), so that both read the same flags
// and KHADGA_TURN_* variables.
type turnOptions struct {
	listen          string
	tlsListen       string
	tlsCert         string
	tlsKey          string
	publicIP        string
	urlHost         string
	ports           string
	realm           string
	secrets         listFlag
	secretFile      string
	ttl             time.Duration
	allowPeers      listFlag
	denyPeers       listFlag
	userQuota       int
	totalQuota      int
	permissionQuota int
	sockets         int
	// getCert is set by khadga serve when its HTTPS certificate should
	// also serve TURNS (no --turn-tls-cert of its own).
	getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// turnFlags defines the --turn-* flags on fs.
func turnFlags(fs *flag.FlagSet) *turnOptions {
	o := &turnOptions{}
	fs.StringVar(&o.listen, "turn-listen", turn.DefaultListen, `TURN UDP and TCP listen address ("off" disables the embedded TURN server)`)
	fs.StringVar(&o.tlsListen, "turn-tls-listen", turn.DefaultTLSListen, "TURNS (TLS) listen address, used when --turn-tls-cert is set")
	fs.StringVar(&o.tlsCert, "turn-tls-cert", "", "TURNS certificate file (PEM chain); re-read when it changes")
	fs.StringVar(&o.tlsKey, "turn-tls-key", "", "TURNS private key file (PEM)")
	fs.StringVar(&o.publicIP, "turn-public-ip", "", "public IPv4 address given out for relays (behind NAT, in containers); default: the listen IP or the host's first global IPv4")
	fs.StringVar(&o.urlHost, "turn-url-host", "", "host name put in turn:/turns: URLs (the certificate's name for TURNS); default: the public IP")
	fs.StringVar(&o.ports, "turn-ports", fmt.Sprintf("%d-%d", turn.DefaultRelayMinPort, turn.DefaultRelayMaxPort), "relay port range MIN-MAX")
	fs.StringVar(&o.realm, "turn-realm", turn.DefaultRealm, "TURN realm")
	fs.Var(&o.secrets, "turn-secret", "TURN REST shared secret, comma-separated for several (any accepted, the first mints); prefer the environment or --turn-secret-file")
	fs.StringVar(&o.secretFile, "turn-secret-file", "", "file with TURN secrets, one a line (# comments), after any --turn-secret")
	fs.DurationVar(&o.ttl, "turn-ttl", turn.DefaultCredentialTTL, "lifetime of minted TURN credentials")
	fs.Var(&o.allowPeers, "turn-allow-peer", "peer CIDR allowed even if denied otherwise, built-in ranges included (repeatable)")
	fs.Var(&o.denyPeers, "turn-deny-peer", "peer CIDR denied on top of the built-in private and reserved ranges (repeatable)")
	fs.IntVar(&o.userQuota, "turn-user-quota", turn.DefaultUserQuota, "allocations per user (-1: no cap)")
	fs.IntVar(&o.totalQuota, "turn-total-quota", 0, "allocations on the server (0: the relay port range, -1: no cap)")
	fs.IntVar(&o.permissionQuota, "turn-permission-quota", turn.DefaultPermissionQuota, "peer addresses per allocation (-1: no cap)")
	fs.IntVar(&o.sockets, "turn-sockets", 0, "UDP sockets on the listen port (SO_REUSEPORT); 0: one per CPU")
	return o
}

// enabled reports whether the embedded TURN server should run.
func (o *turnOptions) enabled() bool { return o.listen != turnOff }

// maxSecretFile bounds the secret file: a few lines by nature.
const maxSecretFile = 64 << 10

// turnConfig turns the options into a turn.Config. Secrets may come out
// empty: `khadga serve` then adds the one kept in its store, and
// `khadga turn` refuses to start. Every problem is reported at once.
func (o *turnOptions) turnConfig(log *slog.Logger, reg prometheus.Registerer) (turn.Config, error) {
	var errs []error
	cfg := turn.Config{
		Listen:          o.listen,
		TLSListen:       o.tlsListen,
		PublicIP:        o.publicIP,
		URLHost:         o.urlHost,
		Realm:           o.realm,
		CredentialTTL:   o.ttl,
		AllowPeers:      o.allowPeers,
		DenyPeers:       o.denyPeers,
		UserQuota:       o.userQuota,
		TotalQuota:      o.totalQuota,
		PermissionQuota: o.permissionQuota,
		UDPSockets:      o.sockets,
		Logger:          log,
		Registerer:      reg,
	}
	var err error
	if cfg.RelayMinPort, cfg.RelayMaxPort, err = parsePortRange(o.ports); err != nil {
		errs = append(errs, fmt.Errorf("--turn-ports: %w", err))
	}
	secrets, err := o.readSecrets()
	if err != nil {
		errs = append(errs, err)
	}
	cfg.Secrets = secrets
	switch {
	case o.tlsCert != "" && o.tlsKey != "":
		kp, err := newKeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			errs = append(errs, fmt.Errorf("--turn-tls-cert/--turn-tls-key: %w", err))
		} else {
			cfg.GetCertificate = kp.get
		}
	case o.tlsCert != "" || o.tlsKey != "":
		errs = append(errs, errors.New("--turn-tls-cert and --turn-tls-key go together"))
	}
	return cfg, errors.Join(errs...)
}

// readSecrets returns the --turn-secret values, then the lines of
// --turn-secret-file.
func (o *turnOptions) readSecrets() ([][]byte, error) {
	var out [][]byte
	for _, s := range o.secrets {
		out = append(out, []byte(s))
	}
	if o.secretFile == "" {
		return out, nil
	}
	f, err := os.Open(o.secretFile)
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
		return out, fmt.Errorf("--turn-secret-file %s: %w", o.secretFile, err)
	}
	return out, nil
}

// parsePortRange parses "MIN-MAX".
func parsePortRange(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q: want MIN-MAX", s)
	}
	if lo, err = strconv.Atoi(strings.TrimSpace(a)); err == nil {
		hi, err = strconv.Atoi(strings.TrimSpace(b))
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%q: want MIN-MAX: %w", s, err)
	}
	return lo, hi, nil
}

// keyPair serves a certificate from files and re-reads them when their
// modification time changes (renewal by certbot or similar), checking at
// most every keyPairCheck.
type keyPair struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	mtime   time.Time
	checked time.Time
}

const keyPairCheck = 30 * time.Second

func newKeyPair(certFile, keyFile string) (*keyPair, error) {
	kp := &keyPair{certFile: certFile, keyFile: keyFile}
	if err := kp.load(); err != nil {
		return nil, err
	}
	return kp, nil
}

func (kp *keyPair) load() error {
	st, err := os.Stat(kp.certFile)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(kp.certFile, kp.keyFile)
	if err != nil {
		return err
	}
	kp.cert, kp.mtime = &cert, st.ModTime()
	return nil
}

func (kp *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	if now := time.Now(); now.Sub(kp.checked) >= keyPairCheck {
		kp.checked = now
		if st, err := os.Stat(kp.certFile); err == nil && !st.ModTime().Equal(kp.mtime) {
			// A failed reload keeps the old certificate: a half-written
			// renewal must not take TURNS down.
			_ = kp.load()
		}
	}
	return kp.cert, nil
}

// runTurn is `khadga turn`: the TURN server alone, for operators who host
// TURN on separate machines. It shares only the secret with the signaling
// server.
func runTurn(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("khadga turn", flag.ContinueOnError)
	fs.Usage = usage(fs, "khadga turn [flags]", "Run only the TURN server (coturn-compatible REST-secret credentials).",
		"KHADGA_TURN_SECRET=$(openssl rand -base64 32) khadga turn --turn-public-ip 203.0.113.7 --turn-metrics 127.0.0.1:9641")
	o := turnFlags(fs)
	metricsAddr := fs.String("turn-metrics", "", "address serving /metrics for this TURN server (empty: none)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logJSON := fs.Bool("log-json", false, "log as JSON lines")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(*logLevel, *logJSON)
	if err != nil {
		return err
	}
	return serveTURN(ctx, o, *metricsAddr, log, nil)
}

// errNoTURNSecret says how to give the standalone server its secret.
var errNoTURNSecret = errors.New("turn: no TURN secret: set KHADGA_TURN_SECRET, --turn-secret-file or --turn-secret " +
	"to the secret the signaling server mints credentials with")

// serveTURN runs a standalone TURN server until ctx ends. ready, if set, is
// called once it serves (tests use it to learn the ports).
func serveTURN(ctx context.Context, o *turnOptions, metricsAddr string, log *slog.Logger, ready func(*turn.Server, net.Addr)) error {
	if !o.enabled() {
		return errors.New("khadga turn: --turn-listen is off")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg, err := o.turnConfig(log, reg)
	if err != nil {
		return err
	}
	if len(cfg.Secrets) == 0 {
		return errNoTURNSecret
	}
	srv, err := turn.New(cfg)
	if err != nil {
		return err
	}
	defer srv.Close()

	var metricsLn net.Listener
	if metricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", metricsAddr); err != nil {
			return fmt.Errorf("--turn-metrics: %w", err)
		}
		stop := serveMetrics(metricsLn, reg, log)
		defer stop()
		log.Info("TURN metrics", slog.String("url", "http://"+metricsLn.Addr().String()+"/metrics"))
	}
	if ready != nil {
		var ma net.Addr
		if metricsLn != nil {
			ma = metricsLn.Addr()
		}
		ready(srv, ma)
	}
	<-ctx.Done()
	log.Info("TURN server stopping", slog.Int("allocations", srv.AllocationCount()))
	return srv.Close()
}

// serveMetrics serves reg on ln's /metrics until the returned stop is
// called.
func serveMetrics(ln net.Listener, reg *prometheus.Registry, log *slog.Logger) (stop func()) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
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

// runTurnCredentials is `khadga turn-credentials`: it prints a TURN REST
// username and password for an operator to test a TURN server with.
func runTurnCredentials(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("khadga turn-credentials", flag.ContinueOnError)
	fs.Usage = usage(fs, "khadga turn-credentials --user NAME [--ttl 1h] [--turn-secret S]",
		"Print TURN REST credentials (the first secret mints), and the URLs when --turn-public-ip or --turn-url-host is set.",
		"KHADGA_TURN_SECRET=$(cat turn.secret) khadga turn-credentials --user alice --ttl 1h")
	o := turnFlags(fs)
	user := fs.String("user", "", "user name inside the credentials (required)")
	ttl := fs.Duration("ttl", 0, "lifetime (default: --turn-ttl)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return printCredentials(os.Stdout, o, *user, *ttl, time.Now())
}

func printCredentials(w io.Writer, o *turnOptions, user string, ttl time.Duration, now time.Time) error {
	if user == "" {
		return errors.New("turn-credentials: --user is required")
	}
	if ttl <= 0 {
		ttl = o.ttl
	}
	secrets, err := o.readSecrets()
	if err != nil {
		return err
	}
	if len(secrets) == 0 {
		return errors.New("turn-credentials: no secret: set KHADGA_TURN_SECRET, --turn-secret-file or --turn-secret")
	}
	if len(secrets[0]) < turn.MinSecretLen {
		return fmt.Errorf("turn-credentials: the secret is %d bytes, want at least %d", len(secrets[0]), turn.MinSecretLen)
	}
	username, password, expires := turn.Mint(secrets[0], user, ttl, now)
	fmt.Fprintf(w, "username: %s\npassword: %s\nexpires:  %s\n", username, password, expires.UTC().Format(time.RFC3339))
	if host := firstNonEmpty(o.urlHost, o.publicIP); host != "" {
		_, port, err := net.SplitHostPort(o.listen)
		if err != nil {
			return fmt.Errorf("--turn-listen: %w", err)
		}
		p, _ := strconv.Atoi(port)
		ice, _ := turn.ICEConfig{Host: host, UDPPort: p, TCPPort: p, Secret: secrets[0], TTL: ttl}.ICEServers(user, now)
		fmt.Fprintf(w, "urls:     %s\n", strings.Join(ice[len(ice)-1].URLs, " "))
	}
	return nil
}

// firstNonEmpty returns the first non-empty string.
func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
