package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/acme"
)

const (
	alpnDomain = "alpn.khadga.test" // proves control with TLS-ALPN-01
	httpDomain = "http.khadga.test" // TLS-ALPN-01 refused, so HTTP-01
)

// acmeBench is khadga's side of the ACME test: an HTTPS listener and a plain
// HTTP listener on 127.0.0.1, which Pebble's VA reaches for the challenges.
type acmeBench struct {
	tlsLn, httpLn net.Listener

	mu      sync.Mutex
	getCert map[string]GetCertificateFunc // by SNI
	http    http.Handler

	alpnHellos   map[string]int // acme-tls/1 hellos per SNI
	http01Hits   atomic.Int32   // GETs under /.well-known/acme-challenge/
	refusedALPN  atomic.Int32
	refuseALPNTo string // SNI whose TLS-ALPN-01 is refused
}

func newACMEBench(t *testing.T) *acmeBench {
	b := &acmeBench{getCert: map[string]GetCertificateFunc{}, alpnHellos: map[string]int{}}
	var err error
	if b.tlsLn, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if b.httpLn, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *acmeBench) ports() pebblePorts {
	return pebblePorts{http: b.httpLn.Addr().(*net.TCPAddr).Port, tls: b.tlsLn.Addr().(*net.TCPAddr).Port}
}

// getCertificate routes a hello to the ACME manager for its SNI and records
// TLS-ALPN-01 challenge hellos.
func (b *acmeBench) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	b.mu.Lock()
	get := b.getCert[hello.ServerName]
	isChallenge := slices.Contains(hello.SupportedProtos, acme.ALPNProto)
	if isChallenge {
		b.alpnHellos[hello.ServerName]++
	}
	refuse := isChallenge && hello.ServerName == b.refuseALPNTo
	b.mu.Unlock()
	if refuse {
		b.refusedALPN.Add(1)
		return nil, errors.New("test: TLS-ALPN-01 refused for this name")
	}
	if get == nil {
		return nil, fmt.Errorf("test: no manager for %q", hello.ServerName)
	}
	return get(hello)
}

func (b *acmeBench) alpnCount(name string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.alpnHellos[name]
}

// serve starts both listeners. conf is the ACME TLS config whose
// GetCertificate is replaced by the SNI router.
func (b *acmeBench) serve(t *testing.T, conf *tls.Config) {
	conf.GetCertificate = b.getCertificate
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello over https") })
	quiet := stdlog.New(io.Discard, "", 0) // refused ALPN handshakes are expected
	httpsSrv := &http.Server{Handler: ok, ReadHeaderTimeout: waitTimeout, ErrorLog: quiet}
	httpSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			b.http01Hits.Add(1)
		}
		b.mu.Lock()
		h := b.http
		b.mu.Unlock()
		h.ServeHTTP(w, r)
	}), ReadHeaderTimeout: waitTimeout, ErrorLog: quiet}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = httpsSrv.Serve(tls.NewListener(b.tlsLn, conf)) }()
	go func() { defer wg.Done(); _ = httpSrv.Serve(b.httpLn) }()
	t.Cleanup(func() {
		_ = httpsSrv.Close()
		_ = httpSrv.Close()
		wg.Wait()
	})
}

// httpsClient sends every request to the bench's HTTPS listener, trusting
// only roots.
func (b *acmeBench) httpsClient(t *testing.T, roots *x509.CertPool) *http.Client {
	addr := b.tlsLn.Addr().String()
	c := &http.Client{
		Timeout: 90 * time.Second, // the first request waits for issuance
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
			ForceAttemptHTTP2: true,
		},
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// TestACMEWithPebble gets real certificates from a real ACME CA (Pebble)
// that validates control of the names for real: its VA resolves them through
// a DNS server in the test (answering 127.0.0.1) and connects to khadga's
// listeners, for TLS-ALPN-01 on the HTTPS port and HTTP-01 on the HTTP port.
// Pebble's always-valid mode is not used.
func TestACMEWithPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs Pebble; skipped with -short")
	}
	log, rec := newLogRecorder(t)
	bin := buildPebble(t, t.TempDir())
	dns := startDNS(t, "khadga.test")
	bench := newACMEBench(t)
	ca := startPebble(t, bin, dns.addr(), bench.ports())
	roots, err := ca.roots()
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	newManager := func(domain, cache, dirURL string) *ACME {
		a, err := NewACME(ACMEConfig{
			Domains:      []string{domain},
			Email:        "ops@khadga.test",
			DirectoryURL: dirURL,
			CacheDir:     filepath.Join(dataDir, cache),
			HTTPClient:   ca.client,
			RenewBefore:  10 * 24 * time.Hour,
			HTTPSPort:    bench.ports().tls,
			Logger:       log,
		})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	alpnACME := newManager(alpnDomain, "acme-alpn", ca.dirURL)
	httpACME := newManager(httpDomain, "acme-http", ca.dirURL)
	bench.getCert[alpnDomain] = alpnACME.GetCertificate
	bench.getCert[httpDomain] = httpACME.GetCertificate
	bench.refuseALPNTo = httpDomain
	bench.http = httpACME.HTTPHandler(nil)
	bench.serve(t, alpnACME.TLSConfig())
	client := bench.httpsClient(t, roots)

	t.Run("tls-alpn-01", func(t *testing.T) {
		leaf := getOverHTTPS(t, client, alpnDomain)
		if got := dns.asked(alpnDomain); got == 0 {
			t.Error("Pebble never resolved the name through the test DNS server")
		}
		if got := bench.alpnCount(alpnDomain); got == 0 {
			t.Error("no acme-tls/1 hello reached the HTTPS listener")
		}
		if rb := alpnACME.m.RenewBefore; rb != 10*24*time.Hour {
			t.Errorf("autocert RenewBefore %s, want the configured 240h", rb)
		}
		t.Logf("issued by %q, valid until %s", leaf.Issuer.CommonName, leaf.NotAfter.Format(time.RFC3339))
	})

	t.Run("http-01", func(t *testing.T) {
		hitsBefore := bench.http01Hits.Load()
		getOverHTTPS(t, client, httpDomain)
		if bench.refusedALPN.Load() == 0 {
			t.Error("TLS-ALPN-01 was never tried and refused; the test does not show the HTTP-01 path")
		}
		if bench.http01Hits.Load() == hitsBefore {
			t.Error("Pebble never fetched an HTTP-01 token from the HTTP listener")
		}
	})

	t.Run("cache survives a restart", func(t *testing.T) {
		// A new manager on the same cache dir, pointed at a CA that does not
		// exist, must serve the cached certificate.
		first, err := tls.Dial("tcp4", bench.tlsLn.Addr().String(), &tls.Config{RootCAs: roots, ServerName: alpnDomain})
		if err != nil {
			t.Fatal(err)
		}
		want := first.ConnectionState().PeerCertificates[0].SerialNumber
		first.Close()
		restarted := newManager(alpnDomain, "acme-alpn", "https://127.0.0.1:1/dir")
		addr := serveTLS(t, restarted.TLSConfig())
		leaf, err := handshake(t, addr, alpnDomain, roots)
		if err != nil {
			t.Fatalf("handshake with the cached certificate: %v", err)
		}
		if leaf.SerialNumber.Cmp(want) != 0 {
			t.Errorf("restarted manager served serial %s, want the cached %s", leaf.SerialNumber, want)
		}

		// A client that dials the IP address sends no SNI and gets the
		// first domain's certificate.
		noSNI, err := tls.Dial("tcp4", addr, &tls.Config{
			InsecureSkipVerify: true, // verified below against the domain instead of the IP
			VerifyConnection: func(cs tls.ConnectionState) error {
				if cs.ServerName != "" {
					return fmt.Errorf("client sent SNI %q", cs.ServerName)
				}
				inter := x509.NewCertPool()
				for _, c := range cs.PeerCertificates[1:] {
					inter.AddCert(c)
				}
				_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: alpnDomain, Roots: roots, Intermediates: inter})
				return err
			},
		})
		if err != nil {
			t.Fatalf("handshake without SNI: %v", err)
		}
		noSNI.Close()
	})

	t.Run("redirect and unknown host", func(t *testing.T) {
		testRedirect(t, bench)
		// A name not configured never reaches the CA.
		_, err := handshake(t, bench.tlsLn.Addr().String(), httpDomain, roots)
		if err != nil {
			t.Fatalf("configured name: %v", err)
		}
		_, err = alpnACME.GetCertificate(&tls.ClientHelloInfo{ServerName: "evil.khadga.test"})
		if !errors.Is(err, ErrUnknownHost) {
			t.Errorf("unconfigured name: got %v, want ErrUnknownHost", err)
		}
	})

	rec.waitFor(t, 0, slog.LevelInfo, "ACME certificate obtained")
}

// getOverHTTPS fetches https://domain/ through the bench with a client that
// trusts only Pebble's root, and returns the leaf the server presented.
func getOverHTTPS(t *testing.T, client *http.Client, domain string) *x509.Certificate {
	t.Helper()
	start := time.Now()
	resp, err := client.Get("https://" + domain + "/")
	if err != nil {
		t.Fatalf("GET over HTTPS: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK || string(body) != "hello over https" {
		t.Fatalf("GET: %s %q", resp.Status, body)
	}
	leaf := resp.TLS.PeerCertificates[0]
	if err := leaf.VerifyHostname(domain); err != nil {
		t.Errorf("leaf: %v", err)
	}
	t.Logf("%s: certificate issued and served in %s", domain, time.Since(start).Round(time.Millisecond))
	return leaf
}

// testRedirect checks that the HTTP handler sends non-challenge requests to
// HTTPS on the configured port and refuses to redirect elsewhere.
func testRedirect(t *testing.T, bench *acmeBench) {
	t.Helper()
	port := strconv.Itoa(bench.ports().tls)
	noFollow := &http.Client{
		Timeout:       waitTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	tests := []struct {
		host, method, want string
		status             int
	}{
		{httpDomain, http.MethodGet, "https://" + httpDomain + ":" + port + "/rooms?x=1", http.StatusMovedPermanently},
		{"attacker.example", http.MethodGet, "https://" + httpDomain + ":" + port + "/rooms?x=1", http.StatusMovedPermanently},
		{httpDomain, http.MethodPost, "", http.StatusBadRequest},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(tt.method, "http://"+bench.httpLn.Addr().String()+"/rooms?x=1", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = tt.host
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status || resp.Header.Get("Location") != tt.want {
			t.Errorf("%s Host %s: %s Location %q, want %d %q", tt.method, tt.host, resp.Status, resp.Header.Get("Location"), tt.status, tt.want)
		}
	}
	noFollow.CloseIdleConnections()
}
