// Package signalingtest starts real khadga signaling servers for tests: a
// real listener on 127.0.0.1:0, a real bbolt store in a temp dir, and
// optionally the embedded TURN server, plus helpers to create users and open
// WebSocket connections.
package signalingtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/internal/testlog"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/admin"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/cluster"
	"github.com/khadga/khadga/signaling/store"
	"github.com/khadga/khadga/turn"
)

// Options adjust the test server. Config's zero fields take test-friendly
// defaults: cheap password hashing, a short resume window, and the admin
// socket at DataDir/admin.sock, as khadga serve has it.
type Options struct {
	Config signaling.Config
	// DataDir reuses a data directory (to test restarts); empty means a new temp dir.
	DataDir string
	// Addr is the listen address; empty means 127.0.0.1:0.
	Addr string
	// TURN starts the embedded TURN server on 127.0.0.1 (UDP and TCP on one
	// free port) and puts its credentials in every welcome. Its peer policy
	// allows 127.0.0.1, which tests need and production denies.
	TURN bool
	// TURNConfig adjusts that TURN server (see StartTURN).
	TURNConfig turn.Config
	// TLS serves HTTPS and WSS in process, as khadga serve does with a
	// certificate, with a certificate made for the tests: ClientTLS and
	// HTTPClient trust it, and so does the shared browser of the e2e tests.
	TLS bool
	// NATS makes the server a node of a cluster on those NATS servers
	// (comma-separated URLs; see internal/natstest), with Cluster's
	// settings (fast failure detection when zero).
	NATS    string
	Cluster cluster.Config
	// Store, if set, is the store the server uses instead of opening one
	// in DataDir; the server does not close it. In-process clusters share
	// one.
	Store store.Backend
}

// Server is a running test server.
type Server struct {
	*signaling.Server
	// URL is the server's base URL, http://127.0.0.1:PORT (https with
	// Options.TLS).
	URL string
	// WSURL is the WebSocket endpoint, ws://127.0.0.1:PORT/ws (wss).
	WSURL string
	// Client is an HTTP client for the server (it trusts the test
	// certificate).
	Client  *http.Client
	DataDir string
	// TURN is the embedded TURN server when Options.TURN was set.
	TURN   *turn.Server
	cancel context.CancelFunc
	served chan error
}

// CheapPassword is an argon2id cost low enough for tests.
var CheapPassword = auth.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// Start starts a server and stops it when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	cfg := opts.Config
	if cfg.DataDir = opts.DataDir; cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = Logger(t)
	}
	if cfg.Password == (auth.Params{}) {
		cfg.Password = CheapPassword
	}
	if cfg.ResumeWindow == 0 {
		cfg.ResumeWindow = 2 * time.Second
	}
	var ts *turn.Server
	if opts.TURN {
		tc := opts.TURNConfig
		if tc.Logger == nil {
			tc.Logger = cfg.Logger
		}
		ts = StartTURN(t, tc)
		cfg.ICEServers = ts.ICEServers
		cfg.TURNAllocations = ts.AllocationCount
	}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("signalingtest: listen: %v", err)
	}
	if cfg.SMTPURL != "" && cfg.PublicURL == "" {
		cfg.PublicURL = "http://" + ln.Addr().String() // emailed links need it
	}
	if cfg.AdminListener == nil {
		if cfg.AdminListener, err = admin.Listen(filepath.Join(cfg.DataDir, "admin.sock")); err != nil {
			ln.Close()
			t.Fatalf("signalingtest: %v", err)
		}
	}
	if opts.Store != nil {
		cfg.Store = unclosed{opts.Store}
	}
	if opts.NATS != "" {
		cfg.Cluster = startCluster(t, opts, cfg.Logger)
	}
	scheme := "http"
	if opts.TLS {
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{testCert()}}
		scheme = "https"
	}
	srv, err := signaling.New(cfg, ln)
	if err != nil {
		ln.Close()
		cfg.AdminListener.Close()
		t.Fatalf("signalingtest: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Server: srv, URL: scheme + "://" + ln.Addr().String(),
		WSURL:   strings.Replace(scheme, "http", "ws", 1) + "://" + ln.Addr().String() + "/ws",
		Client:  HTTPClient(),
		DataDir: cfg.DataDir, TURN: ts, cancel: cancel, served: make(chan error, 1)}
	go func() { s.served <- srv.Serve(ctx) }()
	t.Cleanup(func() { s.Stop() })
	s.waitReady(t)
	return s
}

// StartTURN starts a TURN server for a test on 127.0.0.1 (one UDP socket
// and TCP on one free port) and closes it when the test ends. Secrets and
// AllowPeers get test values when empty: a test secret, and 127.0.0.1,
// where the tests' relays and peers live (production denies loopback).
func StartTURN(t testing.TB, cfg turn.Config) *turn.Server {
	t.Helper()
	if len(cfg.Secrets) == 0 {
		cfg.Secrets = [][]byte{[]byte("signalingtest-turn-secret")}
	}
	if len(cfg.AllowPeers) == 0 {
		cfg.AllowPeers = []string{"127.0.0.1/32"}
	}
	if cfg.Logger == nil {
		cfg.Logger = Logger(t)
	}
	ls, err := turn.Listen(context.Background(), turn.ListenConfig{Addr: "127.0.0.1:0", UDPSockets: 1})
	if err != nil {
		t.Fatalf("signalingtest: TURN: %v", err)
	}
	ts, err := turn.New(cfg, ls)
	if err != nil {
		t.Fatalf("signalingtest: TURN: %v", err)
	}
	t.Cleanup(func() { ts.Close() })
	return ts
}

// Kill stops the server as a crash would, as far as a process can: every
// socket dropped at once, no drain, and (for a cluster node) no goodbye:
// the other nodes find it gone by its missing heartbeats.
func (s *Server) Kill() {
	_ = s.Server.Close()
	s.Stop()
}

// Stop shuts the server down gracefully (clients get a reconnect notice) and
// waits for Serve to return. Safe to call twice.
func (s *Server) Stop() error {
	s.cancel()
	err, ok := <-s.served
	if ok {
		close(s.served)
	}
	return err
}

func (s *Server) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := s.Client.Get(s.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("signalingtest: server not ready after 10s: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // polling an external readiness probe, not synchronising on internals
	}
}

// Tokens is a login answer.
type Tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int    `json:"expires_in"`
}

// Post sends a JSON body and returns the status and the response body.
func (s *Server) Post(t testing.TB, path string, body any, header ...string) (int, []byte) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(js)
	}
	req, err := http.NewRequest(http.MethodPost, s.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// Register creates a user and fails the test if that does not answer 201.
func (s *Server) Register(t testing.TB, user, password string) {
	t.Helper()
	if code, body := s.Post(t, "/api/register", map[string]string{"username": user, "password": password}); code != http.StatusCreated {
		t.Fatalf("register %s: %d %s", user, code, body)
	}
}

// Login signs in and returns the tokens, failing the test on any other answer than 200.
func (s *Server) Login(t testing.TB, user, password string) Tokens {
	t.Helper()
	code, body := s.Post(t, "/api/login", map[string]string{"username": user, "password": password})
	if code != http.StatusOK {
		t.Fatalf("login %s: %d %s", user, code, body)
	}
	var tok Tokens
	if err := json.Unmarshal(body, &tok); err != nil {
		t.Fatal(err)
	}
	return tok
}

// User registers and logs in a user with a default password, returning its tokens.
func (s *Server) User(t testing.TB, name string) Tokens {
	t.Helper()
	s.Register(t, name, "correct horse battery")
	return s.Login(t, name, "correct horse battery")
}

// ClaimRoom claims room for the holder of access, requiring an invite
// (PUT /api/rooms/{room}), and returns the invite token; it fails the test
// on any other answer than 201.
func (s *Server) ClaimRoom(t testing.TB, access, room string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, s.URL+"/api/rooms/"+url.PathEscape(room), strings.NewReader(`{"invite":true}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := s.Client.Do(req)
	if err != nil {
		t.Fatalf("claim %s: %v", room, err)
	}
	defer resp.Body.Close()
	var rs struct {
		InviteToken string `json:"invite_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rs); err != nil || resp.StatusCode != http.StatusCreated || rs.InviteToken == "" {
		t.Fatalf("claim %s: %d %v", room, resp.StatusCode, err)
	}
	return rs.InviteToken
}

// DialWS opens /ws with the bearer token and the query (may be empty).
func (s *Server) DialWS(ctx context.Context, access string, query url.Values) (*websocket.Conn, *http.Response, error) {
	return DialURL(ctx, s.WSURL, access, query)
}

// DialURL opens the WebSocket endpoint wsURL (ws://host:port/ws) of any
// khadga server, such as a `khadga serve` process, as DialWS does.
func DialURL(ctx context.Context, wsURL, access string, query url.Values) (*websocket.Conn, *http.Response, error) {
	u := wsURL
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	h := http.Header{}
	if access != "" {
		h.Set("Authorization", "Bearer "+access)
	}
	d := websocket.Dialer{Subprotocols: []string{proto.Subprotocol}, HandshakeTimeout: 10 * time.Second,
		TLSClientConfig: ClientTLS()}
	return d.DialContext(ctx, u, h)
}

// Logger is a slog.Logger that writes to t.Log, at debug level, until the
// test ends, and is silent afterwards (goroutines may still log while
// shutting down).
func Logger(t testing.TB) *slog.Logger { return testlog.New(t, slog.LevelDebug) }

// startCluster makes the cluster node of a test server.
func startCluster(t testing.TB, opts Options, log *slog.Logger) *cluster.Node {
	t.Helper()
	cc := opts.Cluster
	if cc.Heartbeat == 0 {
		cc.Heartbeat, cc.DeadAfter, cc.OrphanGrace = 200*time.Millisecond, 600*time.Millisecond, time.Second
	}
	if cc.Logger == nil {
		cc.Logger = log
	}
	nc := natstest.Connect(t, opts.NATS)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := cluster.New(ctx, cc, nc)
	if err != nil {
		t.Fatalf("signalingtest: cluster: %v", err)
	}
	return n
}

// unclosed is a store that a server does not close: several in-process
// nodes share it.
type unclosed struct{ store.Backend }

func (unclosed) Close() error { return nil }
