package testcert

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"testing"
)

// TestIssuedVerify: a certificate a CA issues verifies against the CA for
// its names and usage, and not against another CA or for another usage; a
// self-signed one verifies against itself; written files load.
func TestIssuedVerify(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("other CA")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Issue(Spec{CommonName: "peer", DNSNames: []string{"peer.test"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatal(err)
	}
	verify := func(c, root *Cert, name string, usage x509.ExtKeyUsage) error {
		_, err := c.Leaf.Verify(x509.VerifyOptions{Roots: root.Pool(), DNSName: name, KeyUsages: []x509.ExtKeyUsage{usage}})
		return err
	}
	if err := verify(c, ca, "peer.test", x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("issued certificate: %v", err)
	}
	if err := c.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("issued certificate for 127.0.0.1: %v", err)
	}
	if verify(c, other, "peer.test", x509.ExtKeyUsageClientAuth) == nil {
		t.Error("verified against another CA")
	}
	if verify(c, ca, "peer.test", x509.ExtKeyUsageServerAuth) == nil {
		t.Error("verified for server authentication, which it was not issued for")
	}
	self, err := SelfSigned(Spec{CommonName: "self", DNSNames: []string{"self.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(self, self, "self.test", x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("self-signed certificate: %v", err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := c.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Errorf("written files: %v", err)
	}
}
