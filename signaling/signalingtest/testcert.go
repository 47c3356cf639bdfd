package signalingtest

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/khadga/khadga/internal/testcert"
)

// testCert is one self-signed certificate for 127.0.0.1 and localhost, made
// once per test binary, so that a browser started once (internal/chromium)
// can be told to trust it (TLSCertSPKI).
var testCert = sync.OnceValue(func() tls.Certificate {
	c, err := testcert.SelfSigned(testcert.Spec{CommonName: "khadga signalingtest",
		IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}})
	if err != nil {
		panic("signalingtest: " + err.Error())
	}
	return c.TLS()
})

// ClientTLS is a client TLS configuration that trusts the test certificate
// of servers started with Options.TLS.
func ClientTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(testCert().Leaf)
	return &tls.Config{RootCAs: pool}
}

// HTTPClient is an HTTP client that trusts the test certificate. It keeps
// no idle connections: tests that count goroutines see none of its own.
func HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: ClientTLS(), DisableKeepAlives: true},
		Timeout: 30 * time.Second}
}

// TLSCertSPKI is the base64 SHA-256 of the test certificate's public key,
// for Chromium's --ignore-certificate-errors-spki-list: the browser then
// trusts that certificate alone, not every certificate.
func TLSCertSPKI() string {
	sum := sha256.Sum256(testCert().Leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}
