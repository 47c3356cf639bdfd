package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/signalingtest"
)

func TestTargetURL(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"default", nil, "http://127.0.0.1:8080/readyz"},
		{"container wildcard", map[string]string{"KHADGA_HTTP": "0.0.0.0:8080"}, "http://127.0.0.1:8080/readyz"},
		{"empty host", map[string]string{"KHADGA_HTTP": ":9000"}, "http://127.0.0.1:9000/readyz"},
		{"ipv6 wildcard", map[string]string{"KHADGA_HTTP": "[::]:8080"}, "http://[::1]:8080/readyz"},
		{"explicit host", map[string]string{"KHADGA_HTTP": "10.1.2.3:8443"}, "http://10.1.2.3:8443/readyz"},
		{"tls files", map[string]string{"KHADGA_HTTP": "0.0.0.0:8443", "KHADGA_TLS_CERT": "/c.pem"}, "https://127.0.0.1:8443/readyz"},
		{"acme", map[string]string{"KHADGA_HTTP": "0.0.0.0:443", "KHADGA_ACME_DOMAIN": "chat.example.org"}, "https://127.0.0.1:443/readyz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := targetURL(func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("targetURL = %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := targetURL(func(k string) string { return map[string]string{"KHADGA_HTTP": "no-port"}[k] }); err == nil {
		t.Fatal("KHADGA_HTTP without a port: want an error")
	}
}

// TestCheckRealServer runs the check against a real khadga server: ready
// while it serves, failing once it has stopped.
func TestCheckRealServer(t *testing.T) {
	srv := signalingtest.Start(t, signalingtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := check(ctx, newClient(), srv.URL+"/readyz"); err != nil {
		t.Fatalf("serving server: %v", err)
	}
	// The same URL through the environment, as in the container.
	u, err := targetURL(func(k string) string {
		if k == "KHADGA_HTTP" {
			return strings.TrimPrefix(srv.URL, "http://")
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := check(ctx, newClient(), u); err != nil {
		t.Fatalf("URL from KHADGA_HTTP: %v", err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := check(ctx, newClient(), u); err == nil {
		t.Fatal("stopped server: check passed")
	}
}

func TestCheckNotReady(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/readyz", http.StatusFound)
			return
		}
		http.Error(w, `{"code":"not_ready"}`, http.StatusServiceUnavailable)
	}))
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := check(ctx, newClient(), ts.URL+"/readyz"); !errors.Is(err, errNotReady) {
		t.Fatalf("503: err = %v, want errNotReady", err)
	}
	// A redirect is not readiness, wherever it points.
	if err := check(ctx, newClient(), ts.URL+"/redirect"); !errors.Is(err, errNotReady) {
		t.Fatalf("302: err = %v, want errNotReady", err)
	}
}
