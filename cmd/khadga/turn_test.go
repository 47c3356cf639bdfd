package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/turn"
	pionturn "github.com/pion/turn/v4"
)

func parseTurnFlags(t *testing.T, args ...string) *turnOptions {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o := turnFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		t.Fatalf("parseFlags: %v", err)
	}
	return o
}

func TestTurnConfigFromFlagsAndEnv(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secrets")
	if err := os.WriteFile(secretFile, []byte("# rotated in\nfile-one-0123456789\n\n  file-two-0123456789  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KHADGA_TURN_SECRET", "env-one-0123456789, env-two-0123456789")
	t.Setenv("KHADGA_TURN_ALLOW_PEER", "10.1.0.0/16,192.168.5.5")
	o := parseTurnFlags(t, "--turn-ports", "50000-50100", "--turn-secret-file", secretFile,
		"--turn-deny-peer", "8.8.4.0/24", "--turn-ttl", "1h", "--turn-user-quota", "3")
	cfg, err := o.turnConfig(slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	var secrets []string
	for _, s := range cfg.Secrets {
		secrets = append(secrets, string(s))
	}
	if want := []string{"env-one-0123456789", "env-two-0123456789", "file-one-0123456789", "file-two-0123456789"}; !slices.Equal(secrets, want) {
		t.Errorf("secrets %q, want %q", secrets, want)
	}
	if cfg.RelayMinPort != 50000 || cfg.RelayMaxPort != 50100 {
		t.Errorf("ports %d-%d", cfg.RelayMinPort, cfg.RelayMaxPort)
	}
	if !slices.Equal(cfg.AllowPeers, []string{"10.1.0.0/16", "192.168.5.5"}) || !slices.Equal(cfg.DenyPeers, []string{"8.8.4.0/24"}) {
		t.Errorf("peers allow %v deny %v", cfg.AllowPeers, cfg.DenyPeers)
	}
	if cfg.CredentialTTL != time.Hour || cfg.UserQuota != 3 || cfg.Listen != turn.DefaultListen {
		t.Errorf("ttl %v quota %d listen %q", cfg.CredentialTTL, cfg.UserQuota, cfg.Listen)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestTurnConfigReportsEveryProblem(t *testing.T) {
	o := parseTurnFlags(t, "--turn-ports", "lots", "--turn-secret-file", "/nonexistent/secret", "--turn-tls-cert", "c.pem")
	_, err := o.turnConfig(slog.New(slog.DiscardHandler), nil)
	for _, want := range []string{"--turn-ports", "--turn-secret-file", "go together"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

func TestTurnRequiresSecret(t *testing.T) {
	t.Setenv("KHADGA_TURN_SECRET", "")
	err := runTurn(context.Background(), []string{"--turn-listen", "127.0.0.1:0", "--log-level", "error"})
	if !errors.Is(err, errNoTURNSecret) || !strings.Contains(err.Error(), "KHADGA_TURN_SECRET") {
		t.Fatalf("runTurn without a secret: %v", err)
	}
}

// TestStandaloneTURN runs `khadga turn` as the command does, takes
// credentials printed by `khadga turn-credentials`, allocates with them,
// and finds the allocation on the standalone /metrics.
func TestStandaloneTURN(t *testing.T) {
	t.Setenv("KHADGA_TURN_SECRET", "standalone-secret")
	o := parseTurnFlags(t, "--turn-listen", "127.0.0.1:0", "--turn-sockets", "2")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type started struct {
		srv     *turn.Server
		metrics net.Addr
	}
	ready := make(chan started, 1)
	done := make(chan error, 1)
	go func() {
		done <- serveTURN(ctx, o, "127.0.0.1:0", slog.New(slog.DiscardHandler), func(s *turn.Server, m net.Addr) {
			ready <- started{s, m}
		})
	}()
	var st started
	select {
	case st = <-ready:
	case err := <-done:
		t.Fatalf("serveTURN: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("serveTURN did not start")
	}

	var out bytes.Buffer
	if err := printCredentials(&out, parseTurnFlags(t), "ops", time.Hour, time.Now()); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`username: (\S+)\npassword: (\S+)\n`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("turn-credentials printed:\n%s", out.String())
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		TURNServerAddr: st.srv.UDPAddr().String(), Conn: conn, Username: m[1], Password: m[2],
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate with turn-credentials output: %v", err)
	}
	defer relay.Close()

	res, err := http.Get("http://" + st.metrics.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), "khadga_turn_allocations_created_total 1") {
		t.Errorf("/metrics lacks the allocation:\n%.2000s", body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serveTURN: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serveTURN did not stop")
	}
}

func TestPrintCredentials(t *testing.T) {
	t.Setenv("KHADGA_TURN_SECRET", "print-credentials-secret")
	o := parseTurnFlags(t, "--turn-public-ip", "203.0.113.7")
	var out bytes.Buffer
	now := time.Unix(1700000000-3600, 0)
	if err := printCredentials(&out, o, "alice", time.Hour, now); err != nil {
		t.Fatal(err)
	}
	want := "username: 1700000000:alice\npassword: y8z8eDBsOuNvBprEqlknIclJQiA=\n" +
		"expires:  2023-11-14T22:13:20Z\n" +
		"urls:     turn:203.0.113.7:3478?transport=udp turn:203.0.113.7:3478?transport=tcp\n"
	if out.String() != want {
		t.Errorf("printed:\n%s\nwant:\n%s", out.String(), want)
	}
	if err := printCredentials(&out, o, "", time.Hour, now); err == nil {
		t.Error("no error without --user")
	}
	t.Setenv("KHADGA_TURN_SECRET", "s3cret")
	short := parseTurnFlags(t)
	if err := printCredentials(&out, short, "alice", time.Hour, now); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("a 6-byte secret minted credentials: %v", err)
	}
}

// TestShortTURNSecretRefused: khadga turn and khadga serve both refuse a
// TURN secret shorter than 16 bytes, naming the problem (issue 14, point 13).
func TestShortTURNSecretRefused(t *testing.T) {
	t.Setenv("KHADGA_TURN_SECRET", "x")
	err := runTurn(context.Background(), []string{"--turn-listen", "127.0.0.1:0", "--log-level", "error"})
	if err == nil || !strings.Contains(err.Error(), "TURN secret 1 is 1 bytes, want at least 16") {
		t.Fatalf("khadga turn with a 1-byte secret: %v", err)
	}
	t.Setenv("KHADGA_TURN_SECRET", "fifteen-bytes!!")
	err = runServe(context.Background(), []string{"--http", "127.0.0.1:0", "--data", t.TempDir(),
		"--turn-listen", "127.0.0.1:0", "--log-level", "error"})
	if err == nil || !strings.Contains(err.Error(), "TURN secret 1 is 15 bytes, want at least 16") {
		t.Fatalf("khadga serve with a 15-byte secret: %v", err)
	}
}

// TestKeyPairReloads: --turn-tls-cert is re-read when the file changes, and
// a broken rewrite keeps the old certificate.
func TestKeyPairReloads(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePair := func(name string, mtime time.Time) {
		t.Helper()
		c, k := selfSignedPEM(t, name)
		for f, b := range map[string][]byte{certFile: c, keyFile: k} {
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(f, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
	base := time.Now().Add(-time.Hour)
	writePair("one.test", base)
	kp, err := newKeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	name := func() string {
		t.Helper()
		c, err := kp.get(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName
	}
	if got := name(); got != "one.test" {
		t.Fatalf("serving %s", got)
	}
	writePair("two.test", base.Add(time.Minute))
	kp.mu.Lock()
	kp.checked = time.Time{} // skip the 30 s between checks
	kp.mu.Unlock()
	if got := name(); got != "two.test" {
		t.Fatalf("after renewal serving %s, want two.test", got)
	}
	if err := os.WriteFile(certFile, []byte("half-written"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(certFile, base.Add(2*time.Minute), base.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	kp.mu.Lock()
	kp.checked = time.Time{}
	kp.mu.Unlock()
	if got := name(); got != "two.test" {
		t.Fatalf("after a broken rewrite serving %s, want two.test kept", got)
	}
}

func selfSignedPEM(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}
