// Package testcert makes certificates for tests: self-signed ones, and a
// CA of the test's own with the certificates it signs. Keys are ECDSA
// P-256; nothing here is for production.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Spec is what a certificate says.
type Spec struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	// Usages are its extended key usages; none: server authentication.
	Usages []x509.ExtKeyUsage
	// NotAfter is when it expires; zero: a day from now.
	NotAfter time.Time
	// Serial is its serial number; zero: a random one.
	Serial int64
}

// Cert is a certificate with its key.
type Cert struct {
	Leaf *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// SelfSigned makes a certificate that signs itself. It may sign others
// too (it is a CA), so that a pool holding it trusts it however the
// verifier treats a self-signed leaf.
func SelfSigned(s Spec) (*Cert, error) { return create(s, nil, true) }

// NewCA makes a CA named name, for Issue.
func NewCA(name string) (*Cert, error) {
	return create(Spec{CommonName: name, Usages: []x509.ExtKeyUsage{}}, nil, true)
}

// Issue makes a certificate that ca signs.
func (ca *Cert) Issue(s Spec) (*Cert, error) { return create(s, ca, false) }

func create(s Spec, parent *Cert, isCA bool) (*Cert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial := big.NewInt(s.Serial)
	if s.Serial == 0 {
		if serial, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62)); err != nil {
			return nil, err
		}
	}
	usages := s.Usages
	if usages == nil {
		usages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	notAfter := s.NotAfter
	if notAfter.IsZero() {
		notAfter = time.Now().Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: s.CommonName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		DNSNames: s.DNSNames, IPAddresses: s.IPs,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usages,
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	signer, signKey := tmpl, key
	if parent != nil {
		signer, signKey = parent.Leaf, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Cert{Leaf: leaf, Key: key}, nil
}

// TLS is c as crypto/tls serves it.
func (c *Cert) TLS() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.Leaf.Raw}, PrivateKey: c.Key, Leaf: c.Leaf}
}

// Pool is a pool that trusts c (as a CA, or as the certificate itself).
func (c *Cert) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.Leaf)
	return p
}

// CertPEM is the certificate in PEM.
func (c *Cert) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Leaf.Raw})
}

// KeyPEM is the key in PEM (PKCS #8).
func (c *Cert) KeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		panic("testcert: " + err.Error()) // an ECDSA key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// WriteFiles writes the certificate and the key in PEM to certFile and
// keyFile, each to a temporary name first and then renamed, as a
// certificate tool would (a reader never sees half a file).
func (c *Cert) WriteFiles(certFile, keyFile string) error {
	for path, b := range map[string][]byte{certFile: c.CertPEM(), keyFile: c.KeyPEM()} {
		tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	return nil
}
