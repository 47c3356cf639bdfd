package main

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/khadga/khadga/certs"
)

// tlsOptions are the flags that turn on HTTPS, WSS and TURNS.
type tlsOptions struct {
	cert, key     string
	acmeDomains   listFlag
	acmeEmail     string
	acmeDirectory string
	acmeHTTP      string
}

func (o *tlsOptions) enabled() bool { return o.cert != "" || len(o.acmeDomains) > 0 }

// tlsSetup is the certificate source of a running server.
type tlsSetup struct {
	getCert certs.GetCertificateFunc
	config  *tls.Config
	stop    func() // ends the reload loop or the ACME HTTP listener
}

// startTLS loads the certificate source: files (reloaded when they change
// and on SIGHUP) or ACME (with its HTTP-01 listener that redirects
// everything else to HTTPS).
func startTLS(o *tlsOptions, dataDir string, log *slog.Logger) (*tlsSetup, error) {
	switch {
	case o.cert != "" && len(o.acmeDomains) > 0:
		return nil, errors.New("--tls-cert and --acme-domain exclude each other")
	case (o.cert == "") != (o.key == ""):
		return nil, errors.New("--tls-cert and --tls-key go together")
	case o.cert != "":
		return startFileTLS(o, log.With(slog.String("component", "tls")))
	}
	return startACME(o, dataDir, log.With(slog.String("component", "acme")))
}

func startFileTLS(o *tlsOptions, log *slog.Logger) (*tlsSetup, error) {
	src, err := certs.NewFileSource(o.cert, o.key, log)
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

func startACME(o *tlsOptions, dataDir string, log *slog.Logger) (*tlsSetup, error) {
	a, err := certs.NewACME(certs.ACMEConfig{
		Domains: o.acmeDomains, Email: o.acmeEmail, DirectoryURL: o.acmeDirectory,
		CacheDir: filepath.Join(dataDir, "acme"), Logger: log,
	})
	if err != nil {
		return nil, err
	}
	ln, err := listenTCP("--acme-http (HTTP-01 challenges and the redirect to HTTPS)", o.acmeHTTP)
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: a.HTTPHandler(nil), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); hs.Serve(ln) }()
	stop := func() { hs.Close(); <-done }
	return &tlsSetup{getCert: a.GetCertificate, config: a.TLSConfig(), stop: stop}, nil
}
