package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/testcert"
)

// waitTimeout is generous: the CI machine is small and shared.
const waitTimeout = 20 * time.Second

// logRecorder is a slog handler that keeps every record so tests can wait
// for a specific log line instead of sleeping.
type logRecorder struct {
	mu      *sync.Mutex
	records *[]slog.Record
	notify  chan struct{} // gets a token after each record
	attrs   []slog.Attr
}

func newLogRecorder(t testing.TB) (*slog.Logger, *logRecorder) {
	r := &logRecorder{mu: new(sync.Mutex), records: new([]slog.Record), notify: make(chan struct{}, 1)}
	t.Cleanup(func() {
		if t.Failed() {
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, rec := range *r.records {
				t.Logf("log: %s %s %s", rec.Level, rec.Message, recordAttrs(rec))
			}
		}
	})
	return slog.New(r), r
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	rec = rec.Clone()
	rec.AddAttrs(r.attrs...)
	r.mu.Lock()
	*r.records = append(*r.records, rec)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
	return nil
}

func (r *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	c := *r
	c.attrs = append(append([]slog.Attr(nil), r.attrs...), as...)
	return &c
}

func (r *logRecorder) WithGroup(string) slog.Handler { return r }

// count returns how many records there are; pass it to waitFor to look only
// at records logged afterwards.
func (r *logRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(*r.records)
}

// waitFor waits until a record at level whose message contains msg is logged
// at index from or later, and returns it.
func (r *logRecorder) waitFor(t testing.TB, from int, level slog.Level, msg string) slog.Record {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for _, rec := range (*r.records)[min(from, len(*r.records)):] {
			if rec.Level == level && strings.Contains(rec.Message, msg) {
				r.mu.Unlock()
				return rec
			}
		}
		r.mu.Unlock()
		select {
		case <-r.notify:
		case <-deadline.C:
			t.Fatalf("no %s log %q within %s", level, msg, waitTimeout)
		}
	}
}

func recordAttrs(rec slog.Record) string {
	var b strings.Builder
	rec.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	return b.String()
}

// testCert is a self-signed certificate for testName and 127.0.0.1.
type testCert struct {
	certPEM, keyPEM []byte
	leaf            *x509.Certificate
}

const testName = "khadga.test"

func newTestCert(t testing.TB, cn string, notAfter time.Time) testCert {
	t.Helper()
	c, err := testcert.SelfSigned(testcert.Spec{CommonName: cn, NotAfter: notAfter,
		DNSNames: []string{testName, "localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	return testCert{certPEM: c.CertPEM(), keyPEM: c.KeyPEM(), leaf: c.Leaf}
}

// writeFile writes b to name and moves its modification time forward by a
// second from the last write, so the poll loop sees the change even on a
// file system with a coarse clock.
func writeFile(t testing.TB, name string, b []byte) {
	t.Helper()
	var mod time.Time
	if fi, err := os.Stat(name); err == nil {
		mod = fi.ModTime()
	}
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
	next := time.Now()
	if !next.After(mod.Add(time.Second)) {
		next = mod.Add(time.Second)
	}
	if err := os.Chtimes(name, next, next); err != nil {
		t.Fatal(err)
	}
}

// serveTLS runs an HTTPS server on 127.0.0.1:0 with conf and returns its
// address. The server is shut down when the test ends.
func serveTLS(t testing.TB, conf *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // refused handshakes are expected
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(tls.NewListener(ln, conf))
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// handshake connects to addr trusting only roots and returns the leaf the
// server presented.
func handshake(t testing.TB, addr, serverName string, roots *x509.CertPool) (*x509.Certificate, error) {
	t.Helper()
	d := &net.Dialer{Timeout: waitTimeout}
	conn, err := tls.DialWithDialer(d, "tcp4", addr, &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// pool returns a cert pool trusting the given self-signed certificates.
func pool(certs ...testCert) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c.leaf)
	}
	return p
}
