package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/certs"
	"github.com/khadga/khadga/internal/testcert"
	"github.com/khadga/khadga/turn"
	pionturn "github.com/pion/turn/v4"
)

// loadTurn loads `khadga turn`'s configuration from args.
func loadTurn(t *testing.T, args ...string) (*turnCommandConfig, error) {
	t.Helper()
	var c turnCommandConfig
	cmd := turnCommand
	cmd.Output = io.Discard
	err := loadNoArgs(&c, cmd, args)
	return &c, err
}

func TestTurnConfigFromFlagsAndEnv(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secrets")
	if err := os.WriteFile(secretFile, []byte("# rotated in\nfile-one-0123456789\n\n  file-two-0123456789  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KHADGA_TURN_SECRET", "env-one-0123456789, env-two-0123456789")
	t.Setenv("KHADGA_TURN_ALLOW_PEER", "10.1.0.0/16,192.168.5.5")
	c, err := loadTurn(t, "--turn-ports", "50000-50100", "--turn-secret-file", secretFile,
		"--turn-deny-peer", "8.8.4.0/24", "--turn-ttl", "1h", "--turn-user-quota", "3")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.TURN.server(slog.New(slog.DiscardHandler), nil)
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
	if lc := c.TURN.listenConfig(false); cfg.CredentialTTL != time.Hour || cfg.UserQuota != 3 || lc.Addr != turn.DefaultListen || lc.TLSAddr != "" {
		t.Errorf("ttl %v quota %d listen %+v", cfg.CredentialTTL, cfg.UserQuota, lc)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestTurnConfigReportsEveryProblem(t *testing.T) {
	_, err := loadTurn(t, "--turn-ports", "2000-1000", "--turn-secret-file", "/nonexistent/secret", "--turn-tls-cert", "c.pem",
		"--turn-sockets", "1000", "--turn-listen", "nowhere")
	for _, want := range []string{"relay ports 2000-1000", "--turn-secret-file", "go together", "UDP sockets 1000", `listen "nowhere"`, "no TURN secret"} {
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
	if _, err := loadTurn(t, "--turn-listen", "off", "--turn-secret", "turn-test-secret-0123"); err == nil || !strings.Contains(err.Error(), "--turn-listen is off, which only khadga serve takes") {
		t.Fatalf("khadga turn with --turn-listen off: %v", err)
	}
}

// TestTurnCertificateFiles: --turn-tls-cert is read with certs.FileSource,
// so its size limit applies, and a good pair serves TURNS.
func TestTurnCertificateFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	c, k := selfSignedPEM(t, "turn.test")
	big := append(c, bytes.Repeat([]byte("\n"), certs.MaxFileSize)...)
	for f, b := range map[string][]byte{certFile: big, keyFile: k} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err := loadTurn(t, "--turn-secret", "turn-test-secret-0123", "--turn-tls-cert", certFile, "--turn-tls-key", keyFile)
	if !errors.Is(err, certs.ErrFileTooLarge) {
		t.Fatalf("an oversized certificate file: %v, want certs.ErrFileTooLarge", err)
	}
	if err := os.WriteFile(certFile, c, 0o600); err != nil {
		t.Fatal(err)
	}
	tc, err := loadTurn(t, "--turn-secret", "turn-test-secret-0123", "--turn-tls-cert", certFile, "--turn-tls-key", keyFile,
		"--turn-listen", "127.0.0.1:0", "--turn-tls-listen", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := tc.TURN.start(context.Background(), nil, nil, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	conn, err := tls.Dial("tcp", srv.TLSAddr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TURNS handshake: %v", err)
	}
	defer conn.Close()
	if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "turn.test" {
		t.Errorf("TURNS serves %q, want turn.test", cn)
	}
}

// serving is a standalone TURN server that runTURN started.
type serving struct {
	srv     *turn.Server
	metrics net.Addr // nil without --turn-metrics
	// stop ends it as SIGTERM does and returns serveTURN's result; the
	// test fails if it takes more than 10 s.
	stop func() error
}

// runTURN runs serveTURN with o, as `khadga turn` does, until stop.
func runTURN(t *testing.T, o *turnCommandConfig) serving {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ready := make(chan serving, 1)
	done := make(chan error, 1)
	go func() {
		done <- serveTURN(ctx, o, slog.New(slog.DiscardHandler), func(s *turn.Server, m net.Addr) {
			ready <- serving{srv: s, metrics: m}
		})
	}()
	var st serving
	select {
	case st = <-ready:
	case err := <-done:
		t.Fatalf("serveTURN: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("serveTURN did not start")
	}
	st.stop = func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("serveTURN did not stop within 10 s of its context's end")
			return nil
		}
	}
	return st
}

// TestStandaloneTURN runs `khadga turn` as the command does, takes
// credentials printed by `khadga turn-credentials`, allocates with them,
// and finds the allocation on the standalone /metrics; /healthz and
// /readyz answer there too.
func TestStandaloneTURN(t *testing.T) {
	t.Setenv("KHADGA_TURN_SECRET", "standalone-secret")
	o, err := loadTurn(t, "--turn-listen", "127.0.0.1:0", "--turn-sockets", "2", "--turn-metrics", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	st := runTURN(t, o)

	var out bytes.Buffer
	if err := printCredentials(&out, loadCredentials(t, "--user", "ops", "--ttl", "1h"), time.Now()); err != nil {
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
	// Probes for an orchestrator, beside /metrics.
	for _, path := range []string{"/healthz", "/readyz"} {
		res, err := http.Get("http://" + st.metrics.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s: %d, want 200", path, res.StatusCode)
		}
	}

	if err := st.stop(); err != nil {
		t.Fatalf("serveTURN: %v", err)
	}
}

// loadCredentials loads `khadga turn-credentials`' configuration from args.
func loadCredentials(t *testing.T, args ...string) *credentialsConfig {
	t.Helper()
	var c credentialsConfig
	cmd := credentialsCommand
	cmd.Output = io.Discard
	if err := loadNoArgs(&c, cmd, args); err != nil {
		t.Fatal(err)
	}
	return &c
}

func TestPrintCredentials(t *testing.T) {
	t.Setenv("KHADGA_TURN_SECRET", "print-credentials-secret")
	c := loadCredentials(t, "--turn-public-ip", "203.0.113.7", "--user", "alice", "--ttl", "1h")
	var out bytes.Buffer
	now := time.Unix(1700000000-3600, 0)
	if err := printCredentials(&out, c, now); err != nil {
		t.Fatal(err)
	}
	want := "username: 1700000000:alice\npassword: y8z8eDBsOuNvBprEqlknIclJQiA=\n" +
		"expires:  2023-11-14T22:13:20Z\n" +
		"urls:     turn:203.0.113.7:3478?transport=udp turn:203.0.113.7:3478?transport=tcp\n"
	if out.String() != want {
		t.Errorf("printed:\n%s\nwant:\n%s", out.String(), want)
	}
	t.Setenv("KHADGA_TURN_SECRET", "")
	var cc credentialsConfig
	err := loadNoArgs(&cc, credentialsCommand, []string{"--turn-public-ip", "203.0.113.7", "--turn-listen", "nowhere"})
	for _, want := range []string{"--user is required", "no secret", "--turn-listen"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	t.Setenv("KHADGA_TURN_SECRET", "s3cret")
	err = loadNoArgs(&cc, credentialsCommand, []string{"--user", "alice"})
	if err == nil || !strings.Contains(err.Error(), "at least 16") {
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

func selfSignedPEM(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	c, err := testcert.SelfSigned(testcert.Spec{CommonName: cn})
	if err != nil {
		t.Fatal(err)
	}
	return c.CertPEM(), c.KeyPEM()
}

// TestTurnLimitsRefuseZero: package turn takes a zero quota, bandwidth or
// duration for its default, so --turn-user-quota 0 (coturn's "no limit")
// silently meant 10 allocations and --turn-user-bandwidth 0 16 MiB/s.
// Such a value is refused by flag name, as is a negative quota other
// than -1, the documented "no cap", for serve and turn alike.
func TestTurnLimitsRefuseZero(t *testing.T) {
	const secret = "turn-test-secret-0123"
	for _, tc := range []struct {
		args []string
		want string // "" means accepted
	}{
		{[]string{"--turn-user-quota", "0"}, "--turn-user-quota 0: want at least 1, or -1 for no cap"},
		{[]string{"--turn-permission-quota", "0"}, "--turn-permission-quota 0: want at least 1, or -1 for no cap"},
		{[]string{"--turn-channel-quota", "-2"}, "--turn-channel-quota -2: want at least 1, or -1 for no cap"},
		{[]string{"--turn-user-bandwidth", "0"}, "--turn-user-bandwidth 0: want at least 1, or -1 for no cap"},
		{[]string{"--turn-total-quota", "-7"}, "--turn-total-quota -7: want at least 1, 0 for the relay port range, or -1 for no cap"},
		{[]string{"--turn-ttl", "0s"}, "--turn-ttl 0s: want more than 0"},
		{[]string{"--turn-public-ip-interval", "0s"}, "--turn-public-ip-interval 0s: want more than 0"},
		{[]string{"--turn-user-quota", "-1", "--turn-user-bandwidth", "-1", "--turn-total-quota", "0", "--turn-channel-quota", "1"}, ""},
	} {
		args := append([]string{"--turn-secret", secret}, tc.args...)
		_, terr := loadTurn(t, args...)
		_, serr := loadServe(t, args...)
		for cmd, err := range map[string]error{"turn": terr, "serve": serr} {
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("%s %q: %v", cmd, tc.args, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("%s %q: %v, want an error saying %s", cmd, tc.args, err, tc.want)
			}
		}
	}
}

// TestTurnPortInUseNamesTheFlag: a TURN address that is taken is reported
// under its flag, as --http's is, with the system's reason once. It read
// "listen udp4 127.0.0.1:N: listen udp4 127.0.0.1:N: bind: address
// already in use", naming no flag, and TURNS's did not say it was TURNS's.
func TestTurnPortInUseNamesTheFlag(t *testing.T) {
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	certFile, keyFile, _ := writeSelfSigned(t, t.TempDir(), 1)
	base := []string{"--turn-secret", "turn-test-secret-0123", "--log-level", "error"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--turn-listen", udp.LocalAddr().String()}, "--turn-listen " + udp.LocalAddr().String() + ": "},
		{[]string{"--turn-listen", "127.0.0.1:0", "--turn-tls-listen", tcp.Addr().String(), "--turn-tls-cert", certFile, "--turn-tls-key", keyFile},
			"--turn-tls-listen " + tcp.Addr().String() + ": "},
	} {
		err := runTurn(context.Background(), append(base, tc.args...))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Count(err.Error(), "listen ") != 2 {
			t.Errorf("%q: %v, want it to start %q and say listen once after the flag", tc.args, err, tc.want)
		}
	}
}

// TestTurnMetricsInUseStartsNothing: a --turn-metrics address that is
// taken stops `khadga turn` before the TURN server listens. The TURN
// server used to start first, log that it listened, and close again.
func TestTurnMetricsInUseStartsNothing(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	c, err := loadTurn(t, "--turn-secret", "turn-test-secret-0123", "--turn-listen", "127.0.0.1:0", "--turn-metrics", taken.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	err = serveTURN(context.Background(), c, slog.New(slog.NewTextHandler(&logs, nil)), nil)
	if err == nil || !strings.HasPrefix(err.Error(), "--turn-metrics") {
		t.Fatalf("serveTURN: %v, want the --turn-metrics error", err)
	}
	if strings.Contains(logs.String(), "TURN server listening") {
		t.Fatalf("the TURN server started before the metrics listener failed:\n%s", logs.String())
	}
}

// TestStandaloneTURNStopsWithItsCertificate: `khadga turn` with
// --turn-tls-cert stops when told to. serveTURN closes its server twice
// (once for the error it returns, once deferred), and the second close
// waited for the certificate source's goroutines that the first had
// already collected: SIGTERM logged "TURN server stopping" and the
// process hung for good.
func TestStandaloneTURNStopsWithItsCertificate(t *testing.T) {
	certFile, keyFile, _ := writeSelfSigned(t, t.TempDir(), 1)
	o, err := loadTurn(t, "--turn-secret", "turn-test-secret-0123", "--turn-listen", "127.0.0.1:0",
		"--turn-tls-listen", "127.0.0.1:0", "--turn-tls-cert", certFile, "--turn-tls-key", keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := runTURN(t, o).stop(); err != nil {
		t.Fatalf("serveTURN stopped with %v", err)
	}
}
