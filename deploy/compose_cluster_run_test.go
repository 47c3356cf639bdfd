package deploy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/internal/natsconn"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/store"
	"github.com/khadga/khadga/signaling/store/kvstore"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestComposeClusterRuns runs the cluster profile's pieces for real, on
// this machine instead of Docker: three NATS servers with JetStream routed
// together (in process, from the profile's own configuration, so with its
// passwords for the khadga user and the routes), the real khadga binary
// three times with each node's command line and environment from
// docker-compose.yml (only the addresses changed: loopback ports, and the
// load balancer's address in --trust-proxy becomes 127.0.0.1, where Caddy
// runs here), and Caddy with
// deploy/cluster/Caddyfile in front. Through Caddy: an account is made, a
// failed login from 127.0.0.2 claiming another address in X-Forwarded-For
// is audited (in JetStream, read from the cluster) with 127.0.0.2, three
// WebSockets open and land one on each node (least_conn), and after one
// node is stopped (within the compose stop grace) new WebSockets still
// open through the other two. No node's log shows the NATS password.
func TestComposeClusterRuns(t *testing.T) {
	caddy, err := exec.LookPath("caddy")
	if err != nil {
		t.Skip("caddy is not installed (scripts/setup.sh installs it)")
	}
	p := loadClusterCompose(t)
	natsAddr := startComposeNATS(t, p)
	healthcheck := binary(t, "khadga-healthcheck")
	nodes := map[string]*server{}
	var natsURLs string // as the nodes have them, with the password
	for _, name := range clusterNodes {
		svc := p.Services[name]
		env := serviceEnv(svc.Environment)
		env["KHADGA_NATS"] = localNATS(t, env["KHADGA_NATS"], natsAddr)
		natsURLs = env["KHADGA_NATS"]
		nodes[name] = startServer(t, env, localArgs(t, svc.Command[1:])...)
		// The image's health check, which sees KHADGA_HTTP only: /readyz
		// says 200 once the node is on NATS.
		if out, err := runTool(healthcheck, append(cleanEnv(), "KHADGA_HTTP="+nodes[name].addr)); err != nil {
			t.Fatalf("%s health check: %v\n%s", name, err, out)
		}
	}
	lb := startClusterCaddy(t, caddy, nodes)
	base := "http://" + lb

	post := func(path, body string) int {
		t.Helper()
		resp, err := sourceClient("127.0.0.2").Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("/api/register", `{"username":"alice","password":"correct horse battery"}`); code != http.StatusCreated {
		t.Fatalf("register through the load balancer: %d", code)
	}
	if code := proxyGet(t, "127.0.0.2", base+"/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics through the load balancer: %d, want 404", code)
	}
	proxyLogin(t, "127.0.0.2", base)
	ev, err := clusterAudit(t, natsURLs, flagValue(p.Services[clusterNodes[0]].Command, "nats-replicas"))
	if err != nil || len(ev) != 1 || ev[0].Kind != "login-failed" || ev[0].Addr != "127.0.0.2" {
		t.Fatalf("a failed login from 127.0.0.2 through the load balancer is audited as %+v (%v), want that address", ev, err)
	}

	tok := loginThrough(t, base, "alice", "correct horse battery")
	var open []*websocket.Conn
	for range clusterNodes {
		open = append(open, dialThrough(t, lb, tok))
	}
	for _, name := range clusterNodes {
		waitGauge(t, nodes[name], "khadga_hub_connections", 1)
	}
	// A node stops (docker compose stop, a rolling update): it drains
	// within the grace compose gives it, and the others take new clients.
	grace := time.Duration(*p.Services[clusterNodes[0]].StopGracePeriod)
	nodes[clusterNodes[0]].stop(t, grace)
	for range clusterNodes {
		open = append(open, dialThrough(t, lb, tok))
	}
	for _, ws := range open {
		ws.Close()
	}
	// The nodes logged their NATS servers, never the password.
	for _, name := range clusterNodes {
		if logs := nodes[name].logs.String(); !strings.Contains(logs, "nats") || strings.Contains(logs, testNATSPassword) {
			t.Errorf("%s's log names no NATS server, or shows the NATS password", name)
		}
	}
}

// startComposeNATS starts the profile's NATS servers in process from
// their own configuration, read as TestComposeClusterNATS reads it (the
// command line, the environment, deploy/cluster/nats.conf), changing only
// the addresses (loopback and free ports, in the routes too) and the
// stores (temporary directories). The authorization stays the file's, so
// the routes and the nodes authenticate as under compose; a client without
// the password is refused. It returns each server's compose address
// (nats-1:4222) with its local one.
func startComposeNATS(t *testing.T, p *types.Project) map[string]string {
	t.Helper()
	client, route := map[string]string{}, map[string]string{}
	var opts []*natsserver.Options
	for _, name := range clusterNATS {
		o := natsOptions(t, p.Services[name])
		client[fmt.Sprintf("%s:%d", name, natsClientPort)] = freeAddr(t)
		route[fmt.Sprintf("%s:%d", name, o.Cluster.Port)] = freeAddr(t)
		opts = append(opts, o)
	}
	for i, name := range clusterNATS {
		o := opts[i]
		o.Host, o.Port = hostPort(client[fmt.Sprintf("%s:%d", name, natsClientPort)])
		o.Cluster.Host, o.Cluster.Port = hostPort(route[fmt.Sprintf("%s:%d", name, o.Cluster.Port)])
		for _, r := range o.Routes {
			local, ok := route[r.Host]
			if !ok {
				t.Fatalf("%s routes to %s, which is no NATS service's cluster port", name, r.Host)
			}
			r.Host = local
		}
		o.HTTPHost, o.HTTPPort = "", 0
		o.StoreDir = t.TempDir()
		o.NoLog, o.NoSigs = true, true
		s, err := natsserver.NewServer(o)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		go s.Start()
		t.Cleanup(func() {
			s.Shutdown()
			s.WaitForShutdown()
		})
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatalf("%s not ready", name)
		}
		if nc, err := nats.Connect("nats://" + s.Addr().String()); !errors.Is(err, nats.ErrAuthorization) {
			if nc != nil {
				nc.Close()
			}
			t.Fatalf("%s lets a client in without the password: %v", name, err)
		}
	}
	// The routes are up once JetStream has a leader: ask as khadga.
	nc, err := nats.Connect(localNATS(t, envValue(t, p.Services[clusterNodes[0]], "KHADGA_NATS"), client))
	if err != nil {
		t.Fatalf("khadga's URLs are refused: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return client
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream has no leader across the routes: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling the servers' own API for their election
	}
}

// localNATS is a KHADGA_NATS value with each compose address replaced by
// its local one; the user and password stay.
func localNATS(t *testing.T, urls string, local map[string]string) string {
	t.Helper()
	var out []string
	for _, s := range strings.Split(urls, ",") {
		u, err := url.Parse(s)
		if err != nil || local[u.Host] == "" {
			t.Fatalf("KHADGA_NATS names %s, which is not a NATS service (%v)", natsconn.Redact(s), err)
		}
		u.Host = local[u.Host]
		out = append(out, u.String())
	}
	return strings.Join(out, ",")
}

// localArgs is a node's command line for this machine: the load
// balancer's address in --trust-proxy becomes 127.0.0.1.
func localArgs(t *testing.T, args []string) []string {
	t.Helper()
	var out []string
	for _, a := range args {
		switch {
		case strings.HasPrefix(a, "--trust-proxy="):
			a = "--trust-proxy=127.0.0.1"
		case !strings.Contains(a, "="):
			t.Fatalf("node argument %q: the tests read flags as --name=value", a)
		}
		out = append(out, a)
	}
	return out
}

// startClusterCaddy runs deploy/cluster/Caddyfile with its site on a free
// loopback port over plain HTTP and each node's address for its compose
// name.
func startClusterCaddy(t *testing.T, bin string, nodes map[string]*server) string {
	t.Helper()
	dir, addr := t.TempDir(), freeAddr(t)
	conf := readRepoFile(t, clusterCaddyfile)
	if !strings.Contains(conf, "{$KHADGA_DOMAIN} {") {
		t.Fatal("the Caddyfile's site is not {$KHADGA_DOMAIN}")
	}
	conf = strings.Replace(conf, "{$KHADGA_DOMAIN} {", "http://"+addr+" {", 1)
	for name, n := range nodes {
		conf = strings.ReplaceAll(conf, name+":8080", n.addr)
	}
	file := filepath.Join(dir, "Caddyfile")
	writeFile(t, file, "{\n\tadmin off\n}\n"+conf)
	runProxy(t, addr, "", bin, "run", "--config", file, "--adapter", "caddyfile")
	return addr
}

// clusterAudit reads the newest audit event from the cluster's JetStream.
func clusterAudit(t *testing.T, urls, replicas string) ([]store.AuditEvent, error) {
	t.Helper()
	conn, err := natsconn.Connect(natsconn.Options{URLs: []string{urls}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var r int
	fmt.Sscan(replicas, &r)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := kvstore.Open(ctx, conn, kvstore.Options{Replicas: r})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return s.AuditLog(1)
}

func loginThrough(t *testing.T, base, user, password string) string {
	t.Helper()
	resp, err := sourceClient("127.0.0.3").Post(base+"/api/login", "application/json",
		strings.NewReader(`{"username":"`+user+`","password":"`+password+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		Access string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("login through the load balancer: %d %v", resp.StatusCode, err)
	}
	return tok.Access
}

// dialThrough opens a WebSocket through the load balancer and waits for
// the node's welcome.
func dialThrough(t *testing.T, lb, access string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{proto.Subprotocol}, HandshakeTimeout: 10 * time.Second}
	ws, resp, err := d.Dial("ws://"+lb+"/ws?presence=0", http.Header{
		"Authorization": {"Bearer " + access}, "Origin": {"http://" + lb}})
	if err != nil {
		t.Fatalf("WebSocket through the load balancer: %v (%v)", err, resp)
	}
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, b, err := ws.ReadMessage(); err != nil || !strings.Contains(string(b), `"welcome"`) {
		ws.Close()
		t.Fatalf("first message through the load balancer: %s %v", b, err)
	}
	ws.SetReadDeadline(time.Time{})
	return ws
}

// waitGauge waits until the node's /metrics (loopback: allowed without a
// token) shows name at want.
func waitGauge(t *testing.T, n *server, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got float64
	for {
		got = gauge(t, n, name)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: %s = %v, want %v", n.addr, name, got, want)
		}
		time.Sleep(50 * time.Millisecond) // polling a metric another process owns
	}
}

func gauge(t *testing.T, n *server, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + n.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	t.Fatalf("node %s: no %s in /metrics", n.addr, name)
	return 0
}
