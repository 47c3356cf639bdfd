package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/khadga/khadga/certs"
)

// tlsConfig are the settings that turn on HTTPS, WSS and TURNS.
type tlsConfig struct {
	Cert          string   `yaml:"tls-cert" usage:"certificate file (PEM chain) for HTTPS, WSS and TURNS; re-read when it changes and on SIGHUP"`
	Key           string   `yaml:"tls-key" usage:"private key file (PEM) for --tls-cert"`
	ACMEDomains   []string `yaml:"acme-domain" usage:"domain to get a certificate for from an ACME CA such as Let's Encrypt (repeatable)"`
	ACMEEmail     string   `yaml:"acme-email" usage:"contact email for the ACME account"`
	ACMEDirectory string   `yaml:"acme-directory" usage:"ACME directory URL (default Let's Encrypt; use its staging URL to test)"`
	ACMEHTTP      string   `yaml:"acme-http" default:":80" usage:"listen address for ACME HTTP-01 challenges and the redirect to HTTPS"`
}

func (c *tlsConfig) enabled() bool { return c.Cert != "" || len(c.ACMEDomains) > 0 }

// defaultACMEHTTP is --acme-http's default, which validate tells from a
// value the operator set.
const defaultACMEHTTP = ":80"

func (c *tlsConfig) validate() error {
	switch {
	case c.Cert != "" && len(c.ACMEDomains) > 0:
		return errors.New("--tls-cert and --acme-domain exclude each other")
	case (c.Cert == "") != (c.Key == ""):
		return errors.New("--tls-cert and --tls-key go together")
	case c.Cert != "":
		if _, err := certs.NewFileSource(c.Cert, c.Key, nil); err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
	case len(c.ACMEDomains) > 0:
		// Checked here, with the other settings, rather than when ACME
		// starts: the cache directory is only named, not made.
		ac := certs.ACMEConfig{Domains: c.ACMEDomains, Email: c.ACMEEmail, DirectoryURL: c.ACMEDirectory, CacheDir: "acme"}
		return ac.Validate()
	default:
		return c.acmeWithoutDomain()
	}
	return nil
}

// acmeWithoutDomain refuses ACME settings given without --acme-domain:
// they do nothing alone, and a server that then serves plain HTTP hides a
// forgotten or misspelt domain setting.
func (c *tlsConfig) acmeWithoutDomain() error {
	var errs []error
	for _, s := range []struct {
		flag string
		set  bool
	}{
		{"--acme-email", c.ACMEEmail != ""},
		{"--acme-directory", c.ACMEDirectory != ""},
		{"--acme-http", c.ACMEHTTP != defaultACMEHTTP},
	} {
		if s.set {
			errs = append(errs, fmt.Errorf("%s needs --acme-domain (ACME is off without a domain)", s.flag))
		}
	}
	return errors.Join(errs...)
}

// tlsSetup is the certificate source of a running server. A nil *tlsSetup
// is TLS switched off.
type tlsSetup struct {
	getCert certs.GetCertificateFunc
	config  *tls.Config
	stop    func() // ends the reload loop or the ACME HTTP listener
}

// certificate is the certificate source, nil when TLS is off.
func (t *tlsSetup) certificate() certs.GetCertificateFunc {
	if t == nil {
		return nil
	}
	return t.getCert
}

// close stops the certificate source.
func (t *tlsSetup) close() {
	if t != nil {
		t.stop()
	}
}

// start loads the certificate source: files (reloaded when they change
// and on SIGHUP) or ACME (with its HTTP-01 listener that redirects
// everything else to HTTPS on httpsPort). It returns nil when TLS is off.
func (c *tlsConfig) start(dataDir string, httpsPort int, log *slog.Logger) (*tlsSetup, error) {
	switch {
	case !c.enabled():
		return nil, nil
	case c.Cert != "":
		return startCertFiles(c.Cert, c.Key, log.With(slog.String("component", "tls")))
	}
	return c.startACME(dataDir, httpsPort, log.With(slog.String("component", "acme")))
}

// startCertFiles serves the key pair in certFile and keyFile
// (certs.FileSource, with its size limit and expiry check), reloading it
// when the files change and on SIGHUP until stop.
func startCertFiles(certFile, keyFile string, log *slog.Logger) (*tlsSetup, error) {
	src, err := certs.NewFileSource(certFile, keyFile, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{}, 2)
	go func() { src.Run(ctx, certs.DefaultPoll); done <- struct{}{} }()
	go func() {
		defer func() { done <- struct{}{} }()
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := src.Reload(); err == nil {
					log.Info("certificate reloaded on SIGHUP")
				}
			}
		}
	}()
	stop := func() { signal.Stop(hup); cancel(); <-done; <-done }
	return &tlsSetup{getCert: src.GetCertificate, config: certs.TLSConfig(src.GetCertificate), stop: stop}, nil
}

func (c *tlsConfig) startACME(dataDir string, httpsPort int, log *slog.Logger) (*tlsSetup, error) {
	a, err := certs.NewACME(certs.ACMEConfig{
		Domains: c.ACMEDomains, Email: c.ACMEEmail, DirectoryURL: c.ACMEDirectory,
		CacheDir: filepath.Join(dataDir, "acme"), HTTPSPort: httpsPort, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	ln, err := listenTCP("--acme-http (HTTP-01 challenges and the redirect to HTTPS)", c.ACMEHTTP)
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: a.HTTPHandler(nil), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); hs.Serve(ln) }()
	stop := func() { hs.Close(); <-done }
	return &tlsSetup{getCert: a.GetCertificate, config: a.TLSConfig(), stop: stop}, nil
}
