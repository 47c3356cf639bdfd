package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"
)

type pairFiles struct{ cert, key string }

func newPairFiles(t testing.TB, c testCert) pairFiles {
	dir := t.TempDir()
	p := pairFiles{filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")}
	p.write(t, c)
	return p
}

func (p pairFiles) write(t testing.TB, c testCert) {
	t.Helper()
	writeFile(t, p.cert, c.certPEM)
	writeFile(t, p.key, c.keyPEM)
}

// servedSerial handshakes with the server and returns the serial of the
// leaf it served, failing the test if the handshake fails.
func servedSerial(t *testing.T, addr string, c ...testCert) string {
	t.Helper()
	leaf, err := handshake(t, addr, testName, pool(c...))
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return leaf.SerialNumber.String()
}

func TestFileSourceReload(t *testing.T) {
	log, rec := newLogRecorder(t)
	year := time.Now().Add(365 * 24 * time.Hour)
	c1, c2 := newTestCert(t, "first", year), newTestCert(t, "second", year)
	files := newPairFiles(t, c1)

	src, err := NewFileSource(files.cert, files.key, log)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, TLSConfig(src.GetCertificate))
	if got, want := servedSerial(t, addr, c1), c1.leaf.SerialNumber.String(); got != want {
		t.Fatalf("served serial %s, want the first cert %s", got, want)
	}

	// A new pair on disk is not served until a reload: a client trusting
	// only the new certificate must fail.
	files.write(t, c2)
	if _, err := handshake(t, addr, testName, pool(c2)); err == nil {
		t.Fatal("new certificate served before any reload")
	}
	if err := src.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got, want := servedSerial(t, addr, c2), c2.leaf.SerialNumber.String(); got != want {
		t.Fatalf("after Reload served %s, want the second cert %s", got, want)
	}

	// A half-written certificate file: Reload fails, logs, and the second
	// certificate keeps being served.
	c3 := newTestCert(t, "third", year)
	from := rec.count()
	writeFile(t, files.cert, c3.certPEM[:len(c3.certPEM)/2])
	if err := src.Reload(); err == nil {
		t.Fatal("Reload of a half-written certificate succeeded")
	}
	rec.waitFor(t, from, slog.LevelError, "still serving the previous certificate")
	if got, want := servedSerial(t, addr, c2), c2.leaf.SerialNumber.String(); got != want {
		t.Fatalf("after a failed Reload served %s, want the second cert %s", got, want)
	}

	// A whole certificate with the wrong key: same story.
	writeFile(t, files.cert, c3.certPEM)
	if err := src.Reload(); err == nil {
		t.Fatal("Reload of a mismatched key pair succeeded")
	}
	if got := servedSerial(t, addr, c2); got != c2.leaf.SerialNumber.String() {
		t.Fatalf("after a mismatched pair served %s, want the second cert", got)
	}

	// The key arrives; the pair is now whole and Reload serves it.
	writeFile(t, files.key, c3.keyPEM)
	if err := src.Reload(); err != nil {
		t.Fatalf("Reload of the completed pair: %v", err)
	}
	if got, want := servedSerial(t, addr, c3), c3.leaf.SerialNumber.String(); got != want {
		t.Fatalf("after the completed pair served %s, want the third cert %s", got, want)
	}
}

func TestFileSourcePoll(t *testing.T) {
	log, rec := newLogRecorder(t)
	year := time.Now().Add(365 * 24 * time.Hour)
	c1, c2, c3 := newTestCert(t, "first", year), newTestCert(t, "second", year), newTestCert(t, "third", year)
	files := newPairFiles(t, c1)
	src, err := NewFileSource(files.cert, files.key, log)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, TLSConfig(src.GetCertificate))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, 10*time.Millisecond) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(waitTimeout):
			t.Error("Run did not return after cancel")
		}
	}()

	from := rec.count()
	files.write(t, c2)
	rec.waitFor(t, from, slog.LevelInfo, "certificate reloaded")
	if got, want := servedSerial(t, addr, c2), c2.leaf.SerialNumber.String(); got != want {
		t.Fatalf("after the poll served %s, want the second cert %s", got, want)
	}

	// A key that does not match: logged once, old certificate stays.
	from = rec.count()
	writeFile(t, files.key, c3.keyPEM)
	rec.waitFor(t, from, slog.LevelError, "still serving the previous certificate")
	if got := servedSerial(t, addr, c2); got != c2.leaf.SerialNumber.String() {
		t.Fatalf("after a bad pair the poll served %s, want the second cert", got)
	}

	// The matching certificate lands; the poll loop picks up the pair.
	from = rec.count()
	writeFile(t, files.cert, c3.certPEM)
	rec.waitFor(t, from, slog.LevelInfo, "certificate reloaded")
	if got, want := servedSerial(t, addr, c3), c3.leaf.SerialNumber.String(); got != want {
		t.Fatalf("after the fix the poll served %s, want the third cert %s", got, want)
	}
}

// TestFileSourcePollsAtTheInterval: Run looks at the files once every
// interval, DefaultPoll when given none: a pair written just after a look
// is served from the next look on, not a second before. The clock is
// synctest's, so the test checks the exact interval and takes no time.
func TestFileSourcePollsAtTheInterval(t *testing.T) {
	year := time.Now().Add(365 * 24 * time.Hour)
	c1, c2 := newTestCert(t, "first", year), newTestCert(t, "second", year)
	files := newPairFiles(t, c1)
	synctest.Test(t, func(t *testing.T) {
		src, err := NewFileSource(files.cert, files.key, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- src.Run(ctx, 0) }()
		serving := func() string { return src.Certificate().Leaf.Subject.CommonName }

		for round, c := range []testCert{c2, c1} {
			time.Sleep(time.Second) // just after a look (or the start)
			files.write(t, c)
			time.Sleep(DefaultPoll - 2*time.Second)
			synctest.Wait()
			if got := serving(); got == c.leaf.Subject.CommonName {
				t.Fatalf("round %d: %s served %v after the files changed, before the next look", round, got, DefaultPoll-time.Second)
			}
			time.Sleep(time.Second) // the look
			synctest.Wait()
			if got, want := serving(), c.leaf.Subject.CommonName; got != want {
				t.Fatalf("round %d: serving %s a poll interval on, want %s", round, got, want)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	})
}

// TestFileSourcePollLogsOnce checks that a bad pair left on disk is logged
// once, not on every tick. It drives the ticks itself to count them.
func TestFileSourcePollLogsOnce(t *testing.T) {
	log, rec := newLogRecorder(t)
	year := time.Now().Add(365 * 24 * time.Hour)
	c1, c2 := newTestCert(t, "first", year), newTestCert(t, "second", year)
	files := newPairFiles(t, c1)
	src, err := NewFileSource(files.cert, files.key, log)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, files.key, c2.keyPEM)
	for range 3 {
		src.poll()
	}
	writeFile(t, files.key, c2.keyPEM) // rewritten with the same bytes
	src.poll()
	if n := countLogs(rec, slog.LevelError); n != 1 {
		t.Errorf("the bad pair was logged %d times in 4 ticks, want once", n)
	}
	if err := src.Reload(); err == nil {
		t.Fatal("Reload of a mismatched pair succeeded")
	}
	if n := countLogs(rec, slog.LevelError); n != 2 {
		t.Errorf("an explicit Reload of the bad pair logged %d errors in all, want 2", n)
	}
	if got := src.Certificate().Leaf.Subject.CommonName; got != "first" {
		t.Errorf("serving %q, want the first certificate", got)
	}

	os.Remove(files.key)
	src.poll()
	src.poll()
	if n := countLogs(rec, slog.LevelError); n != 3 {
		t.Errorf("a missing key file logged %d errors in all, want 3", n)
	}
}

func countLogs(r *logRecorder, level slog.Level) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range *r.records {
		if rec.Level == level {
			n++
		}
	}
	return n
}

func TestNewFileSourceRefuses(t *testing.T) {
	year := time.Now().Add(365 * 24 * time.Hour)
	good, other := newTestCert(t, "good", year), newTestCert(t, "other", year)
	expired := newTestCert(t, "expired", time.Now().Add(-time.Minute))
	huge := append(bytes.Repeat([]byte("#"), MaxFileSize), good.certPEM...)

	tests := []struct {
		name      string
		cert, key []byte
		missing   bool
		want      error // checked with errors.Is when set
	}{
		{name: "mismatched key", cert: good.certPEM, key: other.keyPEM},
		{name: "expired", cert: expired.certPEM, key: expired.keyPEM, want: ErrExpired},
		{name: "not PEM", cert: []byte("hello"), key: good.keyPEM},
		{name: "empty", cert: nil, key: nil},
		{name: "too large", cert: huge, key: good.keyPEM, want: ErrFileTooLarge},
		{name: "missing", missing: true, want: fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
			if !tt.missing {
				writeFile(t, certFile, tt.cert)
				writeFile(t, keyFile, tt.key)
			}
			src, err := NewFileSource(certFile, keyFile, nil)
			if err == nil {
				t.Fatalf("loaded %v", src.Certificate().Leaf.Subject)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
}

func TestTLSConfigRefusesOldClients(t *testing.T) {
	c := newTestCert(t, "tls", time.Now().Add(time.Hour))
	files := newPairFiles(t, c)
	src, err := NewFileSource(files.cert, files.key, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, TLSConfig(src.GetCertificate))
	dial := func(conf *tls.Config) error {
		conf.RootCAs, conf.ServerName = pool(c), testName
		conn, err := tls.Dial("tcp4", addr, conf)
		if err == nil {
			conn.Close()
		}
		return err
	}
	if err := dial(&tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("a TLS 1.1 client connected")
	}
	cbc := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}
	if err := dial(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: cbc}); err == nil {
		t.Error("a TLS 1.2 client offering only CBC suites connected")
	}
	if err := dial(&tls.Config{MaxVersion: tls.VersionTLS12}); err != nil {
		t.Errorf("a TLS 1.2 client failed: %v", err)
	}
	if err := dial(&tls.Config{MinVersion: tls.VersionTLS13}); err != nil {
		t.Errorf("a TLS 1.3 client failed: %v", err)
	}
	_ = os.Remove(files.cert) // the source keeps serving from memory
	if err := dial(&tls.Config{}); err != nil {
		t.Errorf("handshake after the file went away: %v", err)
	}
}

func TestFileSourceWarnsNearExpiry(t *testing.T) {
	log, rec := newLogRecorder(t)
	c := newTestCert(t, "soon", time.Now().Add(48*time.Hour))
	files := newPairFiles(t, c)
	if _, err := NewFileSource(files.cert, files.key, log); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 0, slog.LevelWarn, "expires within a week")
}
