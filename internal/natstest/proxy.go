package natstest

import (
	"strings"
	"testing"

	"github.com/khadga/khadga/internal/cutproxy"
)

// Proxy forwards a port to a NATS server (cutproxy): Cut cuts a client
// connected through it off from NATS, as a node behind a failed link is,
// while the server and every other client go on; Up lets it back.
type Proxy struct{ *cutproxy.Proxy }

// NewProxy starts a proxy to the server at url (nats://host:port); it
// stops when the test ends.
func NewProxy(t testing.TB, url string) *Proxy {
	t.Helper()
	return &Proxy{cutproxy.New(t, strings.TrimPrefix(url, "nats://"))}
}

// URL is the proxy's client URL.
func (p *Proxy) URL() string { return "nats://" + p.Addr() }
