package certs

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"log/slog"
	"strings"

	"golang.org/x/crypto/acme/autocert"
)

// loggingCache is autocert's cache with a log line whenever a certificate
// for one of our domains is stored, which is the one place that sees both
// first issuance and every renewal.
type loggingCache struct {
	autocert.Cache
	a *ACME
}

// Put stores data and logs it when it is a domain certificate. autocert's
// keys are "domain" (ECDSA) and "domain+rsa"; tokens and the account key
// have other suffixes and are not logged.
func (c loggingCache) Put(ctx context.Context, key string, data []byte) error {
	err := c.Cache.Put(ctx, key, data)
	domain := strings.TrimSuffix(key, "+rsa")
	if !c.a.allowed[domain] {
		return err
	}
	if err != nil {
		c.a.log.Warn("ACME certificate not cached", slog.String("domain", domain), slog.Any("err", err))
		return err
	}
	leaf := firstCert(data)
	if leaf == nil {
		return nil
	}
	fp := sha256.Sum256(leaf.Raw)
	c.a.log.Info("ACME certificate obtained",
		slog.String("domain", domain),
		slog.String("issuer", leaf.Issuer.CommonName),
		slog.Time("not_after", leaf.NotAfter),
		slog.String("sha256", hex.EncodeToString(fp[:8])))
	return nil
}

// firstCert returns the first certificate in autocert's cache format (a
// PEM private key followed by the PEM chain), or nil.
func firstCert(data []byte) *x509.Certificate {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil
			}
			return c
		}
	}
}
