package certs

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestACMEConfigValidate(t *testing.T) {
	good := func() ACMEConfig {
		return ACMEConfig{Domains: []string{"chat.example.org"}, CacheDir: t.TempDir()}
	}
	if err := (&ACMEConfig{Domains: []string{"Chat.Example.org."}, CacheDir: "x"}).Validate(); err != nil {
		t.Fatalf("a valid config: %v", err)
	}
	tests := []struct {
		name   string
		change func(*ACMEConfig)
		want   string
	}{
		{"no domains", func(c *ACMEConfig) { c.Domains = nil }, "no domains"},
		{"wildcard", func(c *ACMEConfig) { c.Domains = []string{"*.example.org"} }, "DNS-01"},
		{"ip", func(c *ACMEConfig) { c.Domains = []string{"203.0.113.9"} }, "IP address"},
		{"single label", func(c *ACMEConfig) { c.Domains = []string{"localhost"} }, "two labels"},
		{"port", func(c *ACMEConfig) { c.Domains = []string{"example.org:443"} }, "has a port"},
		{"unicode", func(c *ACMEConfig) { c.Domains = []string{"bücher.example"} }, "punycode"},
		{"leading hyphen", func(c *ACMEConfig) { c.Domains = []string{"-a.example.org"} }, "bad label"},
		{"empty label", func(c *ACMEConfig) { c.Domains = []string{"a..example.org"} }, "bad label"},
		{"too long", func(c *ACMEConfig) { c.Domains = []string{strings.Repeat("a.", 130) + "org"} }, "253"},
		{"twice", func(c *ACMEConfig) { c.Domains = []string{"a.example.org", "A.example.org"} }, "given twice"},
		{"too many", func(c *ACMEConfig) {
			c.Domains = nil
			for i := range maxDomains + 1 {
				c.Domains = append(c.Domains, "d"+strings.Repeat("x", i%50)+".example.org"+strings.Repeat(".sub", i/50))
			}
		}, "at most"},
		{"email", func(c *ACMEConfig) { c.Email = "ops example.org" }, "not an address"},
		{"directory", func(c *ACMEConfig) { c.DirectoryURL = "ftp://ca.example/dir" }, "not http(s)"},
		{"cache", func(c *ACMEConfig) { c.CacheDir = "" }, "no cache dir"},
		{"renew", func(c *ACMEConfig) { c.RenewBefore = -1 }, "negative renew-before"},
		{"port range", func(c *ACMEConfig) { c.HTTPSPort = 70000 }, "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.change(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want an ErrInvalidConfig about %q", err, tt.want)
			}
			if _, err := NewACME(c); err == nil {
				t.Fatal("NewACME accepted it")
			}
		})
	}

	// Every problem is reported at once.
	err := (&ACMEConfig{Email: "x", RenewBefore: -1}).Validate()
	for _, want := range []string{"no domains", "not an address", "no cache dir", "negative renew-before"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("combined error %v lacks %q", err, want)
		}
	}
}

func TestNewACMECreatesPrivateCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "acme")
	a, err := NewACME(ACMEConfig{Domains: []string{"Chat.Example.org"}, CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("cache dir mode %o, want 700", perm)
	}
	if got := a.Domains(); len(got) != 1 || got[0] != "chat.example.org" {
		t.Errorf("domains %v, want the normalised [chat.example.org]", got)
	}
	if got := a.m.RenewBefore; got != DefaultRenewBefore {
		t.Errorf("RenewBefore %s, want the default %s", got, DefaultRenewBefore)
	}
	conf := a.TLSConfig()
	if conf.MinVersion < 0x0303 || !strings.Contains(strings.Join(conf.NextProtos, ","), "acme-tls/1") {
		t.Errorf("TLS config: min version %x, protos %v", conf.MinVersion, conf.NextProtos)
	}
}

// TestACMEUnreachableCAWarnsOnce asks for a certificate from a CA that is
// not there: the handshake fails, and repeated failures for the same domain
// give one warning, not one per handshake.
func TestACMEUnreachableCAWarnsOnce(t *testing.T) {
	log, rec := newLogRecorder(t)
	a, err := NewACME(ACMEConfig{
		Domains:      []string{"chat.khadga.test"},
		CacheDir:     t.TempDir(),
		DirectoryURL: "https://127.0.0.1:1/dir", // nothing listens on port 1
		Logger:       log,
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, a.TLSConfig())
	for range 3 {
		if _, err := handshake(t, addr, "chat.khadga.test", nil); err == nil {
			t.Fatal("handshake succeeded without a certificate")
		}
	}
	if n := countLogs(rec, slog.LevelWarn); n != 1 {
		t.Errorf("%d warnings for 3 failed handshakes, want 1", n)
	}
	if _, err := handshake(t, addr, "other.khadga.test", nil); err == nil {
		t.Fatal("handshake for an unconfigured name succeeded")
	}
	if n := countLogs(rec, slog.LevelWarn); n != 1 {
		t.Errorf("an unconfigured name added a warning (%d in all)", n)
	}
}
