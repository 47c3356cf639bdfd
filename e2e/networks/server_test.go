package networks_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/internal/testcert"
	"github.com/khadga/khadga/proto"
)

const password = "correct horse battery"

// metricsAddr is where the server serves /metrics: loopback of the public
// namespace, which the test reaches through netlab's dialer.
const metricsAddr = "127.0.0.1:9100"

// server is khadga serve running in the world's public namespace, as an
// operator would run it on a host with a public address: a real process
// with the real flags, so that the lab tests the binary people deploy.
type server struct {
	w      *world
	p      *proc
	dir    string
	caFile string // the lab CA, which signed the TURNS certificate
}

// startServer adds the users and starts khadga serve with the embedded
// TURN server on UDP and TCP 3478 and TURNS on 5349, the peers' public
// range allowed (and not the server's own address), and waits until it is
// ready.
func (w *world) startServer(users ...string) *server {
	w.t.Helper()
	s := &server{w: w, dir: w.t.TempDir()}
	khadga := binary(w.t, "khadga")
	data := filepath.Join(s.dir, "data")
	for _, u := range users {
		cmd := exec.Command(khadga, "user", "add", u, "--data", data, "--password", "-")
		cmd.Stdin = strings.NewReader(password + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			w.t.Fatalf("khadga user add %s: %v\n%s", u, err, out)
		}
	}
	cert, key := s.makeCerts()
	s.p = start(w.t, w.pub, "khadga serve", labEnv(), khadga, "serve",
		"--http", httpAddr, "--data", data, "--metrics", metricsAddr,
		"--turn-listen", serverIP+":3478",
		"--turn-tls-listen", serverIP+":5349", "--turn-tls-cert", cert, "--turn-tls-key", key,
		"--turn-allow-peer", publicRange)
	s.waitReady()
	return s
}

// waitReady polls /readyz from inside the public namespace.
func (s *server) waitReady() {
	s.w.t.Helper()
	hc := s.w.pub.HTTPClient()
	deadline := time.Now().Add(waitTimeout)
	for {
		res, err := hc.Get(serverURL + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-s.p.done:
			s.w.t.Fatalf("khadga serve exited: %v\n%s", s.p.err, s.p.output())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.w.t.Fatalf("khadga serve not ready after %v: %v\n%s", waitTimeout, err, s.p.output())
		}
	}
}

// makeCerts writes a lab CA and a TURNS certificate for the server's IP
// signed by it, and returns the certificate and key files. Peers trust
// the CA through SSL_CERT_FILE.
func (s *server) makeCerts() (certFile, keyFile string) {
	t := s.w.t
	t.Helper()
	ca, err := testcert.NewCA("khadga lab CA")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Issue(testcert.Spec{CommonName: serverIP, IPs: []net.IP{net.ParseIP(serverIP)}})
	if err != nil {
		t.Fatal(err)
	}
	s.caFile = filepath.Join(s.dir, "ca.pem")
	certFile, keyFile = filepath.Join(s.dir, "turns.pem"), filepath.Join(s.dir, "turns.key")
	if err := os.WriteFile(s.caFile, ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// metrics reads the server's Prometheus metrics: each sample's value by
// its name with labels, as in the text format (`name{l="v"}`).
func (s *server) metrics() map[string]float64 {
	s.w.t.Helper()
	res, err := s.w.pub.HTTPClient().Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		s.w.t.Fatalf("metrics: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		s.w.t.Fatalf("metrics: %s", res.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// turnCounts are the TURN figures a topology checks.
type turnCounts struct {
	allocations      float64 // created
	toPeer, fromPeer float64 // bytes relayed
	denied           float64
}

func (s *server) turn() turnCounts {
	m := s.metrics()
	return turnCounts{
		allocations: m["khadga_turn_allocations_created_total"],
		toPeer:      m[`khadga_turn_relayed_bytes_total{direction="to_peer"}`],
		fromPeer:    m[`khadga_turn_relayed_bytes_total{direction="from_peer"}`],
		denied:      m["khadga_turn_permissions_denied_total"],
	}
}

// peerEnv is the environment of a khadga-peer signed in as user.
func (s *server) peerEnv(t *testing.T, user string) []string {
	return labEnv("KHADGA_USER="+user, "KHADGA_PASSWORD="+password,
		"KHADGA_PEER_CONFIG="+t.TempDir(), "SSL_CERT_FILE="+s.caFile)
}

// peer starts khadga-peer COMMAND in the site's host namespace as user.
func (s *server) peer(t *testing.T, at *site, user string, args ...string) *proc {
	t.Helper()
	args = append(args, "--server", serverURL)
	return start(t, at.host, fmt.Sprintf("khadga-peer %s (%s)", args[0], user), s.peerEnv(t, user), binary(t, "khadga-peer"), args...)
}

// wantTransports signs in and checks that the welcome's ice_servers list
// every transport the server runs: STUN, TURN over UDP and TCP, TURNS.
func (s *server) wantTransports(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	tok, err := client.Login(ctx, s.w.pub.HTTPClient(), serverURL, "alice", password, "")
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	d := websocket.Dialer{NetDialContext: s.w.pub.DialContext, Subprotocols: []string{proto.Subprotocol}}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+tok.Access)
	ws, _, err := d.DialContext(ctx, "ws://"+httpAddr+"/ws", h)
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	defer ws.Close()
	_, b, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read welcome: %v", err)
	}
	m, err := proto.Decode(b, len(b))
	if err != nil {
		t.Fatalf("welcome: %v", err)
	}
	var w proto.Welcome
	if err := m.DecodeData(&w); err != nil {
		t.Fatalf("welcome: %v", err)
	}
	got := map[string]bool{}
	for _, is := range w.ICEServers {
		for _, u := range is.URLs {
			got[u] = true
		}
	}
	for _, u := range []string{
		"stun:" + serverIP + ":3478",
		"turn:" + serverIP + ":3478?transport=udp",
		"turn:" + serverIP + ":3478?transport=tcp",
		"turns:" + serverIP + ":5349?transport=tcp",
	} {
		if !got[u] {
			t.Errorf("welcome's ice_servers lack %s: %+v", u, w.ICEServers)
		}
	}
}
