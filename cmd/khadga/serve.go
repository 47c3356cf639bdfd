package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/store"
	"github.com/khadga/khadga/turn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// serveOptions are the flags of `khadga serve`.
type serveOptions struct {
	http         string
	dataDir      string
	origins      listFlag
	accessTTL    time.Duration
	resumeWindow time.Duration
	logLevel     string
	logJSON      bool
	metricsToken string
	metricsAddr  string
	trustProxy   listFlag
	smtpURL      string
	smtpFrom     string
	publicURL    string
	tls          tlsOptions
}

func serveFlags(fs *flag.FlagSet) *serveOptions {
	o := &serveOptions{}
	fs.StringVar(&o.http, "http", "127.0.0.1:8080", "HTTP listen address")
	fs.StringVar(&o.dataDir, "data", "khadga-data", "data directory (holds the bbolt store)")
	fs.Var(&o.origins, "allow-origin", "extra browser origin allowed to open the WebSocket, scheme://host[:port] (repeatable)")
	fs.DurationVar(&o.accessTTL, "access-ttl", 15*time.Minute, "lifetime of access tokens")
	fs.DurationVar(&o.resumeWindow, "resume-window", 30*time.Second, "how long a dropped session can resume")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.BoolVar(&o.logJSON, "log-json", false, "log as JSON lines")
	fs.StringVar(&o.metricsToken, "metrics-token", "", "bearer token that lets non-loopback clients read /metrics (default: loopback only)")
	fs.StringVar(&o.metricsAddr, "metrics", "", "serve /metrics on this separate address instead of the main one")
	fs.Var(&o.trustProxy, "trust-proxy", "reverse proxy address or CIDR whose X-Forwarded-For names the client (repeatable)")
	fs.StringVar(&o.smtpURL, "smtp-url", "", "smtp://user:pass@host:port: turns on the email check at registration (prefer the environment: it holds a password)")
	fs.StringVar(&o.smtpFrom, "smtp-from", "", "sender address of verification emails")
	fs.StringVar(&o.tls.cert, "tls-cert", "", "certificate file (PEM chain) for HTTPS, WSS and TURNS; re-read when it changes and on SIGHUP")
	fs.StringVar(&o.tls.key, "tls-key", "", "private key file (PEM) for --tls-cert")
	fs.Var(&o.tls.acmeDomains, "acme-domain", "domain to get a certificate for from an ACME CA such as Let's Encrypt (repeatable)")
	fs.StringVar(&o.tls.acmeEmail, "acme-email", "", "contact email for the ACME account")
	fs.StringVar(&o.tls.acmeDirectory, "acme-directory", "", "ACME directory URL (default Let's Encrypt; use its staging URL to test)")
	fs.StringVar(&o.tls.acmeHTTP, "acme-http", ":80", "listen address for ACME HTTP-01 challenges and the redirect to HTTPS")
	fs.StringVar(&o.publicURL, "public-url", "", "the server's URL as users reach it, e.g. https://chat.example.org; required with --smtp-url (emailed links)")
	return o
}

// newLogger builds the process logger; every package gets it injected.
func newLogger(level string, asJSON bool) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	if asJSON {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
}

func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("khadga serve", flag.ContinueOnError)
	fs.Usage = usage(fs, "khadga [serve] [flags]", "Run the signaling server with its embedded TURN server.",
		"khadga serve --http 0.0.0.0:8080 --turn-public-ip 203.0.113.7")
	o := serveFlags(fs)
	t := turnFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(o.logLevel, o.logJSON)
	if err != nil {
		return err
	}
	setGCPercent()
	ln, err := listenTCP("--http", o.http)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The hub asks for ICE servers at each welcome; the TURN server starts
	// after the store is open, because its default secret lives there.
	var turnSrv atomic.Pointer[turn.Server]
	cfg := signaling.Config{
		Logger:         log,
		DataDir:        o.dataDir,
		AllowedOrigins: o.origins,
		AccessTTL:      o.accessTTL,
		ResumeWindow:   o.resumeWindow,
		Registerer:     reg,
		Gatherer:       reg,
		MetricsToken:   o.metricsToken,
		SMTPURL:        o.smtpURL,
		SMTPFrom:       o.smtpFrom,
		PublicURL:      o.publicURL,
		ICEServers: func(user string) ([]proto.ICEServer, time.Time) {
			if t := turnSrv.Load(); t != nil {
				return t.ICEServers(user)
			}
			return nil, time.Time{}
		},
		TURNAllocations: func() int {
			if t := turnSrv.Load(); t != nil {
				return t.AllocationCount()
			}
			return 0
		},
	}
	scheme := "http"
	if o.tls.enabled() {
		tl, err := startTLS(&o.tls, o.dataDir, log)
		if err != nil {
			ln.Close()
			return err
		}
		defer tl.stop()
		cfg.TLS, scheme = tl.config, "https"
		if t.tlsCert == "" {
			t.getCert = tl.getCert // TURNS on the same certificate
		}
	}
	cfg.TrustedProxies = o.trustProxy
	if o.metricsAddr != "" {
		if cfg.MetricsListener, err = net.Listen("tcp", o.metricsAddr); err != nil {
			ln.Close()
			return fmt.Errorf("--metrics %s: %w", o.metricsAddr, err)
		}
	}
	srv, err := signaling.New(cfg, ln)
	if err != nil {
		ln.Close()
		return err
	}
	defer srv.Close()
	if t.enabled() {
		ts, err := startEmbeddedTURN(t, srv.Store(), log, reg)
		if err != nil {
			return err
		}
		defer ts.Close()
		turnSrv.Store(ts)
	}
	log.Info("khadga is running", slog.String("url", scheme+"://"+displayAddr(ln.Addr())), slog.String("data", cfg.StorePath()))
	return srv.Serve(ctx)
}

// turnSecretName is the store key of the TURN secret generated on first run.
const turnSecretName = "turn-rest-secret"

// startEmbeddedTURN starts the TURN server of `khadga serve`. Without
// --turn-secret it uses the secret kept in the store, generated on first
// run, which `khadga turn` nodes can be given to share the load.
func startEmbeddedTURN(o *turnOptions, st *store.Store, log *slog.Logger, reg prometheus.Registerer) (*turn.Server, error) {
	cfg, err := o.turnConfig(log.With(slog.String("component", "turn")), reg)
	if err != nil {
		return nil, err
	}
	if cfg.GetCertificate == nil && o.getCert != nil {
		cfg.GetCertificate = o.getCert
	}
	if len(cfg.Secrets) == 0 {
		secret, err := st.Secret(turnSecretName, func() ([]byte, error) {
			b := make([]byte, 32)
			if _, err := rand.Read(b); err != nil {
				return nil, err
			}
			return []byte(base64.RawURLEncoding.EncodeToString(b)), nil
		})
		if err != nil {
			return nil, fmt.Errorf("TURN secret: %w", err)
		}
		cfg.Secrets = [][]byte{secret}
	}
	return turn.New(cfg) // it logs its addresses
}

// displayAddr turns a listen address into one a browser can open.
func displayAddr(a net.Addr) string {
	s := a.String()
	if strings.HasPrefix(s, "0.0.0.0:") || strings.HasPrefix(s, "[::]:") {
		_, port, _ := net.SplitHostPort(s)
		return "localhost:" + port
	}
	return s
}

// usage prints a command's synopsis, flags (with their environment twins)
// and an example.
func usage(fs *flag.FlagSet, synopsis, what, example string) func() {
	return func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: %s\n\n%s\n\nflags (each also read from its KHADGA_* environment variable):\n", synopsis, what)
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(w, "  --%s (%s)\n    \t%s", f.Name, envName(f.Name), f.Usage)
			if f.DefValue != "" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(w)
		})
		fmt.Fprintf(w, "\nexample:\n  %s\n", example)
	}
}

// serverGCPercent is the garbage collector's target for khadga serve when
// GOGC is not set. A signaling server's memory is mostly idle connections,
// and relaying a signal allocates almost nothing, so a smaller heap costs
// little collection work: at 10,000 idle connections it cut the RSS from
// about 8.5 to 7.1 KiB per connection (docs/benchmarks.md).
const serverGCPercent = 50

// setGCPercent applies serverGCPercent unless the operator set GOGC.
func setGCPercent() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(serverGCPercent)
	}
}
