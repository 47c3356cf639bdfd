package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// Directory URLs of Let's Encrypt. Use the staging one while trying a setup:
// its rate limits are generous and its certificates are not trusted.
const (
	LetsEncryptURL        = acme.LetsEncryptURL
	LetsEncryptStagingURL = "https://acme-staging-v02.api.letsencrypt.org/directory"
)

// DefaultRenewBefore is how long before expiry a certificate is renewed when
// ACMEConfig.RenewBefore is zero: a third of a 90-day certificate, which
// leaves weeks to notice and fix a failing renewal.
const DefaultRenewBefore = 30 * 24 * time.Hour

// maxDomains bounds ACMEConfig.Domains: one certificate is requested per
// domain, and CAs rate-limit orders.
const maxDomains = 100

// ErrUnknownHost means a TLS handshake or HTTP-01 request named a host that
// is not in ACMEConfig.Domains. Such requests never reach the CA.
var ErrUnknownHost = errors.New("certs: host not in the ACME domain list")

// ErrInvalidConfig is wrapped by every problem ACMEConfig.Validate reports.
var ErrInvalidConfig = errors.New("certs: invalid ACME config")

// ACMEConfig configures [NewACME].
type ACMEConfig struct {
	// Domains are the names to get certificates for, one certificate each.
	// Wildcards are not possible (they need DNS-01).
	Domains []string
	// Email is given to the CA for expiry notices; optional.
	Email string
	// DirectoryURL is the CA's ACME directory; LetsEncryptURL when empty.
	DirectoryURL string
	// CacheDir keeps the account key and the certificates across restarts.
	// It is created with mode 0700. Required: without a cache every restart
	// would order new certificates and soon hit the CA's rate limits.
	CacheDir string
	// HTTPClient talks to the CA; http.DefaultClient when nil. Tests set
	// one that trusts a test CA's root.
	HTTPClient *http.Client
	// RenewBefore is how long before expiry certificates are renewed;
	// DefaultRenewBefore when zero.
	RenewBefore time.Duration
	// HTTPSPort is the port the HTTP-01 handler redirects other requests
	// to; 443 when zero.
	HTTPSPort int
	// Logger receives issuance and failure logs; discarded when nil.
	Logger *slog.Logger
}

// Validate reports every problem with the config at once.
func (c *ACMEConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if len(c.Domains) == 0 {
		bad("no domains")
	}
	if len(c.Domains) > maxDomains {
		bad("%d domains, at most %d", len(c.Domains), maxDomains)
	}
	seen := make(map[string]bool, len(c.Domains))
	for _, d := range c.Domains {
		n, err := normalizeHost(d)
		switch {
		case err != nil:
			bad("domain %q: %v", d, err)
		case seen[n]:
			bad("domain %q given twice", d)
		}
		seen[n] = true
	}
	if c.Email != "" && (!strings.Contains(c.Email, "@") || strings.ContainsAny(c.Email, " \t\r\n<>")) {
		bad("email %q is not an address", c.Email)
	}
	if c.DirectoryURL != "" && !strings.HasPrefix(c.DirectoryURL, "https://") && !strings.HasPrefix(c.DirectoryURL, "http://") {
		bad("directory URL %q is not http(s)", c.DirectoryURL)
	}
	if c.CacheDir == "" {
		bad("no cache dir")
	}
	if c.RenewBefore < 0 {
		bad("negative renew-before %s", c.RenewBefore)
	}
	if c.HTTPSPort < 0 || c.HTTPSPort > 65535 {
		bad("HTTPS port %d out of range", c.HTTPSPort)
	}
	return errors.Join(errs...)
}

// normalizeHost lowercases a DNS name, drops a trailing dot and checks it is
// a name a public CA can issue for with HTTP-01 or TLS-ALPN-01.
func normalizeHost(h string) (string, error) {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	switch {
	case h == "":
		return "", errors.New("empty")
	case len(h) > 253:
		return "", errors.New("longer than 253 characters")
	case net.ParseIP(h) != nil:
		return "", errors.New("an IP address, not a name")
	case !strings.Contains(h, "."):
		return "", errors.New("needs at least two labels")
	case strings.HasPrefix(h, "*."):
		return "", errors.New("a wildcard: a CA issues those only for the DNS-01 challenge, and khadga answers HTTP-01 and TLS-ALPN-01; list each name instead, or serve a wildcard certificate of your own")
	case strings.Contains(h, ":"):
		return "", errors.New("has a port: give the name alone (ACME validates on ports 80 and 443)")
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("bad label %q", label)
		}
		for _, r := range label {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
				return "", fmt.Errorf("character %q (give internationalised names in punycode)", r)
			}
		}
	}
	return h, nil
}

// ACME gets and renews certificates from an ACME CA with autocert. Its
// methods are safe for concurrent use.
type ACME struct {
	m         *autocert.Manager
	domains   []string // normalised, in config order
	allowed   map[string]bool
	httpsPort int
	log       *slog.Logger

	warnMu   sync.Mutex
	lastWarn map[string]time.Time // by domain; bounded by the domain list
}

// warnEvery spaces out the warnings about one domain: while the CA is
// unreachable, every handshake fails the same way (autocert remembers a
// failed order for a minute).
const warnEvery = time.Minute

// NewACME validates cfg, creates the cache dir and returns the manager.
// Nothing is ordered until the first handshake that needs a certificate.
func NewACME(cfg ACMEConfig) (*ACME, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("certs: ACME cache dir: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &ACME{allowed: make(map[string]bool), httpsPort: cfg.HTTPSPort, log: log, lastWarn: make(map[string]time.Time)}
	if a.httpsPort == 0 {
		a.httpsPort = 443
	}
	for _, d := range cfg.Domains {
		n, _ := normalizeHost(d) // Validate checked it
		a.domains = append(a.domains, n)
		a.allowed[n] = true
	}
	dir := cfg.DirectoryURL
	if dir == "" {
		dir = LetsEncryptURL
	}
	renew := cfg.RenewBefore
	if renew == 0 {
		renew = DefaultRenewBefore
	}
	a.m = &autocert.Manager{
		Prompt:      autocert.AcceptTOS,
		Cache:       loggingCache{autocert.DirCache(cfg.CacheDir), a},
		HostPolicy:  a.hostPolicy,
		RenewBefore: renew,
		Email:       cfg.Email,
		Client: &acme.Client{
			DirectoryURL: dir,
			HTTPClient:   cfg.HTTPClient,
			UserAgent:    "khadga",
		},
	}
	log.Info("ACME enabled", slog.Any("domains", a.domains), slog.String("directory", dir), slog.Duration("renew_before", renew))
	return a, nil
}

// hostPolicy lets autocert order and answer challenges only for the
// configured domains. The HTTP-01 handler passes r.Host, which carries a
// port when the CA validates on a port other than 80.
func (a *ACME) hostPolicy(_ context.Context, host string) error {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if a.allowed[strings.TrimSuffix(strings.ToLower(host), ".")] {
		return nil
	}
	return fmt.Errorf("%w: %q", ErrUnknownHost, host)
}

// GetCertificate returns the certificate for the hello's server name,
// ordering it from the CA on first use (the handshake waits), and answers
// TLS-ALPN-01 challenges. A hello without a server name (a client that dialled
// an IP address) gets the first domain's certificate. It has the signature of
// [tls.Config.GetCertificate].
func (a *ACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello.ServerName == "" {
		h := *hello
		h.ServerName = a.domains[0]
		hello = &h
	}
	cert, err := a.m.GetCertificate(hello)
	if err != nil {
		a.log.Log(context.Background(), a.failureLevel(hello.ServerName, err), "ACME certificate unavailable",
			slog.String("server_name", hello.ServerName), slog.Any("err", err))
		return nil, fmt.Errorf("certs: %w", err)
	}
	return cert, nil
}

// failureLevel is Warn for the first failure of one of our domains in
// warnEvery and Debug otherwise. Scanners send any SNI they like, so a name
// that is not ours is never news.
func (a *ACME) failureLevel(name string, err error) slog.Level {
	if errors.Is(err, ErrUnknownHost) {
		return slog.LevelDebug
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if !a.allowed[name] {
		return slog.LevelDebug // e.g. a malformed name autocert refused
	}
	a.warnMu.Lock()
	defer a.warnMu.Unlock()
	if now := time.Now(); now.Sub(a.lastWarn[name]) >= warnEvery {
		a.lastWarn[name] = now
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

// TLSConfig returns [TLSConfig] with this source's GetCertificate and the
// acme-tls/1 protocol, so the listener on port 443 answers TLS-ALPN-01.
func (a *ACME) TLSConfig() *tls.Config {
	c := TLSConfig(a.GetCertificate)
	c.NextProtos = append(c.NextProtos, acme.ALPNProto)
	return c
}

// HTTPHandler answers HTTP-01 challenges under /.well-known/acme-challenge/
// and passes every other request to fallback. A nil fallback redirects GET
// and HEAD to the same path over HTTPS and refuses other methods. Serve it
// on port 80; calling it also lets the manager use HTTP-01 when TLS-ALPN-01
// fails.
func (a *ACME) HTTPHandler(fallback http.Handler) http.Handler {
	if fallback == nil {
		fallback = http.HandlerFunc(a.redirect)
	}
	return a.m.HTTPHandler(fallback)
}

// redirect sends a plain HTTP request to HTTPS. The target host is the
// request's only if it is one of ours, so the redirect cannot point
// elsewhere.
func (a *ACME) redirect(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "use HTTPS", http.StatusBadRequest)
		return
	}
	host := a.domains[0]
	if a.hostPolicy(r.Context(), r.Host) == nil {
		host = r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.ToLower(host)
	}
	if a.httpsPort != 443 {
		host = net.JoinHostPort(host, strconv.Itoa(a.httpsPort))
	}
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusMovedPermanently)
}

// Domains returns the normalised domain list.
func (a *ACME) Domains() []string { return append([]string(nil), a.domains...) }
