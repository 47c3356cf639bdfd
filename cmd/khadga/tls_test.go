package main

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/testcert"
)

// writeSelfSigned writes a certificate for 127.0.0.1 with the given serial.
func writeSelfSigned(t *testing.T, dir string, serial int64) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	c, err := testcert.SelfSigned(testcert.Spec{CommonName: "khadga test", Serial: serial,
		IPs: []net.IP{net.ParseIP("127.0.0.1")}, NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := c.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, c.Pool()
}

func TestServeTLSWithReloadOnSIGHUP(t *testing.T) {
	dir, certDir := t.TempDir(), t.TempDir()
	certFile, keyFile, pool := writeSelfSigned(t, certDir, 1)
	p := startServe(t, dir, "KHADGA_TLS_CERT="+certFile, "KHADGA_TLS_KEY="+keyFile)
	if !strings.HasPrefix(p.url, "https://") {
		t.Fatalf("logged URL %s is not https", p.url)
	}
	get := func(pool *x509.CertPool) (*http.Response, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		return c.Get(p.url + "/healthz")
	}
	resp, err := get(pool)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 1 || !strings.Contains(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Fatalf("serial %v, HSTS %q", resp.TLS.PeerCertificates[0].SerialNumber, resp.Header.Get("Strict-Transport-Security"))
	}
	old := &tls.Config{MaxVersion: tls.VersionTLS11, InsecureSkipVerify: true}
	if c, err := tls.Dial("tcp", strings.TrimPrefix(p.url, "https://"), old); err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 client connected")
	}

	_, _, pool2 := writeSelfSigned(t, certDir, 2)
	p.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := get(pool2)
		if err == nil {
			resp.Body.Close()
			if resp.TLS.PeerCertificates[0].SerialNumber.Int64() == 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new certificate was not served after SIGHUP: %v\n%s", err, p.logs)
		}
		time.Sleep(20 * time.Millisecond) // polling what the server serves, not synchronising
	}
	p.stop(t)
}

// TestACMERedirectPort: the ACME listener's redirect from plain HTTP goes
// to the port users reach HTTPS on: --public-url's when it is set, else
// --http's. It went to 443 whatever the server listened on.
func TestACMERedirectPort(t *testing.T) {
	for _, c := range []struct {
		http, public string
		want         int
	}{
		{":443", "", 443},
		{"0.0.0.0:8443", "", 8443},
		{"[::]:8443", "https://chat.example.org", 443},         // a port forward from 443
		{":443", "https://chat.example.org:9443", 9443},        // one to 443 from another
		{"127.0.0.1:8080", "http://chat.example.org:80", 8080}, // not an HTTPS URL: --http's
	} {
		s := serveConfig{HTTP: c.http, PublicURL: c.public}
		if got := s.httpsPort(); got != c.want {
			t.Errorf("--http %s --public-url %q: redirect to port %d, want %d", c.http, c.public, got, c.want)
		}
	}
}
