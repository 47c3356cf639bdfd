// Package certs provides the TLS certificates that khadga serves on HTTPS,
// WSS and TURNS, from one of two sources:
//
//   - [FileSource]: a certificate and key in PEM files, reloaded without a
//     restart when the files change ([FileSource.Run] polls them) or when the
//     operator asks ([FileSource.Reload], which the binary calls on SIGHUP).
//     A reload that fails keeps the certificate already being served.
//   - [ACME]: certificates from an ACME CA such as Let's Encrypt, through
//     golang.org/x/crypto/acme/autocert. Domain control is proven with
//     TLS-ALPN-01 on the HTTPS listener or HTTP-01 on port 80
//     ([ACME.HTTPHandler]); certificates are cached on disk and renewed
//     before they expire.
//
// Both expose a GetCertificate method with the signature of
// [tls.Config.GetCertificate], so one source feeds every TLS listener: pass
// it to [TLSConfig] for an [net/http.Server], or straight to the TURN
// server's GetCertificate.
//
// The package never listens on its own: the caller owns the sockets, the
// servers and the goroutines (FileSource.Run blocks until its context ends).
package certs
