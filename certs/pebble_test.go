package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/testlog"
)

// pebbleModule is the Pebble command the test builds. Its version is pinned
// by the tool line in go.mod.
const pebbleModule = "github.com/letsencrypt/pebble/v2/cmd/pebble"

// buildPebble builds Pebble from the module cache into dir. If it cannot be
// built the test is skipped, except under CI=true when the failure is not a
// download problem: then go.mod/go.sum or the toolchain is wrong, which is
// ours to fix.
func buildPebble(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("Pebble not built: no go command on PATH (%v)", err)
	}
	bin := filepath.Join(dir, "pebble")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, pebbleModule)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Logf("built Pebble in %s", time.Since(start).Round(time.Millisecond))
		return bin
	}
	msg := fmt.Sprintf("Pebble could not be built (%v):\n%s", err, out)
	if os.Getenv("CI") == "true" && !downloadProblem(string(out)) {
		t.Fatalf("%s\nthis is not a network problem, so go.mod/go.sum or the toolchain needs fixing", msg)
	}
	t.Skip(msg)
	return ""
}

// downloadProblem tells a failure to fetch Pebble's modules (no network, the
// proxy refusing) from a failure to build them.
func downloadProblem(out string) bool {
	for _, s := range []string{"dial tcp", "no such host", "i/o timeout", "connection refused",
		"TLS handshake timeout", "proxy.golang.org", "403 Forbidden", "404 Not Found", "GOPROXY", "network is unreachable"} {
		if strings.Contains(out, s) {
			return true
		}
	}
	return false
}

// pebble is a running Pebble ACME server.
type pebble struct {
	dirURL  string       // ACME directory
	mgmtURL string       // management interface
	client  *http.Client // trusts Pebble's own HTTPS certificate
	out     *lockedBuffer
}

type pebblePorts struct{ http, tls int }

// startPebble runs bin with real validation: the VA resolves names through
// dnsAddr and connects to 127.0.0.1 on the given HTTP-01 and TLS-ALPN-01
// ports. It stops Pebble when the test ends.
func startPebble(t *testing.T, bin, dnsAddr string, ports pebblePorts) *pebble {
	t.Helper()
	dir := t.TempDir()
	// Pebble's own HTTPS certificate; the ACME client must trust it.
	own := newTestCert(t, "pebble", time.Now().Add(24*time.Hour))
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, own.certPEM)
	writeFile(t, keyFile, own.keyPEM)
	client := &http.Client{
		Timeout:   waitTimeout,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool(own)}},
	}
	t.Cleanup(client.CloseIdleConnections)

	// Pebble cannot listen on port 0 and tell us the port, so pick free
	// ports and retry if another process takes one first.
	var lastErr error
	for range 3 {
		listen, mgmt := freePort(t), freePort(t)
		p, err := runPebble(t, bin, dir, certFile, keyFile, dnsAddr, listen, mgmt, ports)
		if err == nil {
			p.client = client
			if err = p.waitReady(); err == nil {
				return p
			}
		}
		lastErr = err
	}
	t.Fatalf("Pebble did not start: %v", lastErr)
	return nil
}

func runPebble(t *testing.T, bin, dir, certFile, keyFile, dnsAddr string, listen, mgmt int, ports pebblePorts) (*pebble, error) {
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", listen),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mgmt),
		"certificate":             certFile,
		"privateKey":              keyFile,
		"httpPort":                ports.http,
		"tlsPort":                 ports.tls,
		"keyAlgorithm":            "ecdsa",
	}}
	b, err := json.Marshal(conf)
	if err != nil {
		return nil, err
	}
	confFile := filepath.Join(dir, fmt.Sprintf("pebble-%d.json", listen))
	if err := os.WriteFile(confFile, b, 0o600); err != nil {
		return nil, err
	}
	out := &lockedBuffer{}
	cmd := exec.Command(bin, "-config", confFile, "-dnsserver", dnsAddr)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = pebbleEnv()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start Pebble: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("Pebble output:\n%s", out.String())
		}
	})
	p := &pebble{
		dirURL:  fmt.Sprintf("https://127.0.0.1:%d/dir", listen),
		mgmtURL: fmt.Sprintf("https://127.0.0.1:%d", mgmt),
		out:     out,
	}
	go func() { <-exited; out.markExited() }()
	return p, nil
}

// pebbleEnv is the environment with Pebble's test knobs set for a quick,
// deterministic run. PEBBLE_VA_ALWAYS_VALID is removed: validation is real.
func pebbleEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PEBBLE_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"PEBBLE_VA_NOSLEEP=1",      // no random 0-15 s delay before validating
		"PEBBLE_WFE_NONCEREJECT=0", // no random badNonce errors
		"PEBBLE_AUTHZREUSE=0",      // every order gets fresh authorizations
	)
}

// waitReady polls the directory until Pebble answers or exits. Polling is
// the only readiness signal a separate process gives us.
func (p *pebble) waitReady() error {
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := p.client.Get(p.dirURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if _, err = p.roots(); err == nil {
					return nil
				}
			}
		}
		select {
		case <-p.out.exitedCh():
			return fmt.Errorf("pebble exited: %s", p.out.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pebble not ready within %s: %v", waitTimeout, err)
		}
	}
}

// roots returns a pool with Pebble's issuing root, from /roots/0.
func (p *pebble) roots() (*x509.CertPool, error) {
	resp, err := p.client.Get(p.mgmtURL + "/roots/0")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("roots: %s", resp.Status)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("roots: no PEM certificate")
	}
	return pool, nil
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// lockedBuffer collects a process's output from its copying goroutines.
type lockedBuffer struct {
	testlog.Buffer
	once   sync.Once
	exited chan struct{}
}

func (l *lockedBuffer) exitedCh() chan struct{} {
	l.once.Do(func() { l.exited = make(chan struct{}) })
	return l.exited
}

func (l *lockedBuffer) markExited() { close(l.exitedCh()) }
