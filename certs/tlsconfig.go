package certs

import (
	"crypto/tls"
)

// GetCertificateFunc is the signature of [tls.Config.GetCertificate]. Both
// [FileSource.GetCertificate] and [ACME.GetCertificate] have it, and so does
// the TURN server's GetCertificate setting.
type GetCertificateFunc = func(*tls.ClientHelloInfo) (*tls.Certificate, error)

// tls12Suites are the TLS 1.2 cipher suites khadga accepts: ECDHE key
// exchange (forward secrecy) with an AEAD cipher only. TLS 1.3 suites are not
// configurable in crypto/tls and are all fine.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// TLSConfig returns the server TLS configuration khadga uses everywhere:
// TLS 1.2 at least, ECDHE+AEAD cipher suites for TLS 1.2, Go's default
// curves (which include the post-quantum hybrid), and ALPN for HTTP/2 and
// HTTP/1.1. WebSockets still work: Go's HTTP/2 server does not offer
// extended CONNECT by default, so browsers open WebSockets over HTTP/1.1.
//
// Each call returns a new config the caller may change.
func TLSConfig(getCert GetCertificateFunc) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   append([]uint16(nil), tls12Suites...),
		GetCertificate: getCert,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}
