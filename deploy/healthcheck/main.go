// Command khadga-healthcheck asks a khadga server on this host whether it is
// ready (GET /readyz) and exits 0 if it is, 1 if not. It exists because the
// server image is distroless: there is no shell, curl or wget for a Docker
// HEALTHCHECK, so the image carries this small static program instead.
//
// It finds the server from the same environment as the server itself:
// KHADGA_HTTP gives the port (a wildcard host becomes loopback), and
// KHADGA_TLS_CERT or KHADGA_ACME_DOMAIN switch it to HTTPS. --url overrides.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// defaultHTTP is khadga serve's default --http.
const defaultHTTP = "127.0.0.1:8080"

// maxBody bounds what is read of the answer: /readyz answers a few bytes.
const maxBody = 4 << 10

// errNotReady means the server answered, but not 200 OK.
var errNotReady = errors.New("not ready")

func main() {
	fs := flag.NewFlagSet("khadga-healthcheck", flag.ContinueOnError)
	url := fs.String("url", "", "readiness URL (default: from KHADGA_HTTP, KHADGA_TLS_CERT, KHADGA_ACME_DOMAIN)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	target := *url
	if target == "" {
		var err error
		if target, err = targetURL(os.Getenv); err != nil {
			fmt.Fprintln(os.Stderr, "khadga-healthcheck:", err)
			os.Exit(2)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := check(ctx, newClient(), target); err != nil {
		fmt.Fprintln(os.Stderr, "khadga-healthcheck:", err)
		os.Exit(1)
	}
}

// targetURL builds the readiness URL of the server configured by the
// environment that getenv reads.
func targetURL(getenv func(string) string) (string, error) {
	addr := getenv("KHADGA_HTTP")
	if addr == "" {
		addr = defaultHTTP
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("KHADGA_HTTP=%q: %w", addr, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	scheme := "http"
	if getenv("KHADGA_TLS_CERT") != "" || getenv("KHADGA_ACME_DOMAIN") != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/readyz", nil
}

// newClient returns a client that does not follow redirects and, for
// HTTPS, does not verify the certificate: it is issued for the public name,
// never for the loopback address this program dials, and nothing secret is
// sent.
func newClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // loopback probe, see above
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// check GETs url and returns nil only on 200 OK.
func check(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s: %w", url, resp.Status, body, errNotReady)
	}
	return nil
}
