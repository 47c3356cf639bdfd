// Package natstest starts real NATS servers, with JetStream, inside the
// test process: one server, or a cluster of several with routes between
// them, on 127.0.0.1 with ports of their own and stores in the test's temp
// dir. They stop when the test ends. Nothing here fakes NATS: it is the
// nats-server the cluster runs in production, started in process.
package natstest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// readyWait bounds a server's start, and a cluster's JetStream election.
const readyWait = 30 * time.Second

// Start starts one NATS server with JetStream.
func Start(t testing.TB) *server.Server {
	t.Helper()
	opts := options("n0", t.TempDir())
	s := start(t, opts)
	waitJetStream(t, s)
	return s
}

// New starts one NATS server with JetStream and its store in dir, for a
// TestMain that shares one server among a package's tests (each test then
// uses names of its own); the caller shuts it down. Tests use Start.
func New(dir string) (*server.Server, error) {
	s, err := server.NewServer(options("shared", dir))
	if err != nil {
		return nil, fmt.Errorf("natstest: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(readyWait) {
		s.Shutdown()
		return nil, fmt.Errorf("natstest: server not ready after %v", readyWait)
	}
	return s, nil
}

// Cluster is n NATS servers with routes between them, as a 3-server
// production cluster runs: JetStream replicates across them.
type Cluster struct {
	t       testing.TB
	Servers []*server.Server
	opts    []*server.Options
}

// StartCluster starts a cluster of n servers and waits until JetStream has
// a leader. StartCluster(t, 1) is one standalone server that Stop and
// Restart can take away and bring back (on the same port, with the same
// store).
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	ports := freePorts(t, n)
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	for i := range n {
		o := options(fmt.Sprintf("n%d", i), t.TempDir())
		if n > 1 {
			o.Cluster = server.ClusterOpts{Name: "khadga-test", Host: "127.0.0.1", Port: ports[i]}
			o.Routes = routes
		}
		c.opts = append(c.opts, o)
		c.Servers = append(c.Servers, start(t, o))
	}
	for _, s := range c.Servers {
		waitJetStream(t, s)
	}
	return c
}

// URLs is the client URLs of the servers that run, comma-separated, as
// nats.Connect and khadga's --nats take them.
func (c *Cluster) URLs() string {
	var us []string
	for _, s := range c.Servers {
		if s.Running() {
			us = append(us, s.ClientURL())
		}
	}
	return strings.Join(us, ",")
}

// Stop stops server i, as a crash would (no lame-duck mode).
func (c *Cluster) Stop(i int) {
	c.Servers[i].Shutdown()
	c.Servers[i].WaitForShutdown()
}

// Restart starts server i again with its old options (ports and store).
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Servers[i] = start(c.t, c.opts[i])
}

func options(name, dir string) *server.Options {
	return &server.Options{
		ServerName: name,
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   dir,
		NoLog:      true,
		NoSigs:     true,
	}
}

func start(t testing.TB, o *server.Options) *server.Server {
	t.Helper()
	cp := *o // the server keeps its options; o changes below
	s, err := server.NewServer(&cp)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(readyWait) {
		s.Shutdown()
		t.Fatalf("natstest: server %s not ready", o.ServerName)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	// Keep the port the kernel chose, so that a restart comes back on it
	// and clients reconnect.
	o.Port = s.Addr().(*net.TCPAddr).Port
	return s
}

// waitJetStream waits until JetStream answers on s (in a cluster: until it
// has elected its meta leader).
func waitJetStream(t testing.TB, s *server.Server) {
	t.Helper()
	nc := Connect(t, s.ClientURL())
	defer nc.Close()
	deadline := time.Now().Add(readyWait)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: JetStream not available on %s", s.Name())
		}
		time.Sleep(50 * time.Millisecond) // polling the server's own API, not synchronising on internals
	}
}

// Connect opens a client connection that keeps trying to reconnect, and
// closes it when the test ends.
func Connect(t testing.TB, urls string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("natstest: connect %s: %v", urls, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// freePorts picks n free ports for the servers' routes, which every
// server must know before any starts (JetStream's cluster needs its routes
// configured). They come from below the kernel's ephemeral range: a port
// from it, closed here and bound by its server a moment later, could be
// taken meanwhile as the local port of any connection made by the tests
// running beside this one, or of a route dialling it (TCP's self-connect),
// and the server then never listened (CI saw "server n2 not ready").
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	lo, hi := portsBelowEphemeral()
	var ports []int
	for len(ports) < n {
		p := lo + rand.IntN(hi-lo+1)
		if slices.Contains(ports, p) {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // taken: another
		}
		l.Close()
		ports = append(ports, p)
	}
	return ports
}

// portsBelowEphemeral is a range of ports below the kernel's ephemeral
// range (Linux: /proc/sys/net/ipv4/ip_local_port_range, 32768 by
// default), or below 32768 where that cannot be read.
func portsBelowEphemeral() (lo, hi int) {
	first := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 12000 {
				first = v
			}
		}
	}
	return 10000, first - 1
}
