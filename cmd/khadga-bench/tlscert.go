//go:build linux

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// benchCert is the self-signed certificate both servers present in the
// wss combinations: ECDSA P-256 for 127.0.0.1, valid for a day, as PEM
// files that khadga (--tls-cert, --tls-key) and PeerJS (server.js) read.
type benchCert struct {
	certFile, keyFile string
	cert              *x509.Certificate
}

// writeBenchCert makes a key and certificate and writes them into dir.
func writeBenchCert(dir string, now time.Time) (*benchCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "khadga-bench"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	bc := &benchCert{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"), cert: cert}
	if err := writePEM(bc.certFile, "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	if err := writePEM(bc.keyFile, "PRIVATE KEY", pkcs8, 0o600); err != nil {
		return nil, err
	}
	return bc, nil
}

func writePEM(path, typ string, der []byte, perm os.FileMode) error {
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, b, perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// roots is a pool that trusts the certificate; with system, the system's
// roots too (for a khadga server given by -url https://…).
func (bc *benchCert) roots(system bool) *x509.CertPool {
	pool := x509.NewCertPool()
	if system {
		if sp, err := x509.SystemCertPool(); err == nil {
			pool = sp
		}
	}
	pool.AddCert(bc.cert)
	return pool
}
