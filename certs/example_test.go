package certs_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/khadga/khadga/certs"
)

// Serving HTTPS from certificate files that are reloaded when they change
// and on SIGHUP. The same GetCertificate goes to the TURN server's
// GetCertificate for TURNS.
func ExampleFileSource() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	log := slog.Default()

	src, err := certs.NewFileSource("/etc/khadga/cert.pem", "/etc/khadga/key.pem", log)
	if err != nil {
		log.Error("tls", slog.Any("err", err))
		return
	}
	go func() { _ = src.Run(ctx, certs.DefaultPoll) }() // use an errgroup in real code

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = src.Reload() // a failure is logged and the old pair stays
			}
		}
	}()

	srv := &http.Server{
		Handler:           http.NotFoundHandler(),
		TLSConfig:         certs.TLSConfig(src.GetCertificate),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ln, err := net.Listen("tcp", ":443")
	if err != nil {
		return
	}
	// Empty file names: the certificate comes from TLSConfig.GetCertificate.
	_ = srv.ServeTLS(ln, "", "")
	// turnConfig.GetCertificate = src.GetCertificate
}

// Serving HTTPS with certificates from Let's Encrypt: TLS-ALPN-01 on :443,
// HTTP-01 and a redirect to HTTPS on :80.
func ExampleACME() {
	a, err := certs.NewACME(certs.ACMEConfig{
		Domains:      []string{"chat.example.org"},
		Email:        "ops@example.org",
		DirectoryURL: certs.LetsEncryptStagingURL, // drop once the setup works
		CacheDir:     filepath.Join("/var/lib/khadga", "acme"),
		Logger:       slog.Default(),
	})
	if err != nil {
		return
	}
	plain := &http.Server{Addr: ":80", Handler: a.HTTPHandler(nil), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = plain.ListenAndServe() }()

	srv := &http.Server{Addr: ":443", Handler: http.NotFoundHandler(), TLSConfig: a.TLSConfig(), ReadHeaderTimeout: 10 * time.Second}
	_ = srv.ListenAndServeTLS("", "")
	// turnConfig.GetCertificate = a.GetCertificate
}
