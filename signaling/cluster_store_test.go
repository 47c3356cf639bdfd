package signaling_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/metricstest"
	"github.com/khadga/khadga/internal/natsconn"
	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/internal/testlog"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/khadga/khadga/signaling/store/kvstore"
	"github.com/prometheus/client_golang/prometheus"
)

// TestStoreOnNATSUnavailable runs a server on the JetStream KV store and
// stops its NATS server: /readyz says not ready, and logins and refreshes
// are refused at once with 503 and a message (not "wrong password", not
// "signed out"). When NATS is back, everything works again with the same
// tokens, without a restart.
func TestStoreOnNATSUnavailable(t *testing.T) {
	nats := natstest.StartCluster(t, 1) // one server that can be restarted
	s := signalingtest.Start(t, signalingtest.Options{Store: kvNode(t, nats.URLs())})
	s.Register(t, "alice", password)
	tok := s.Login(t, "alice", password)
	waitReady(t, s, http.StatusOK)

	nats.Stop(0)
	waitReady(t, s, http.StatusServiceUnavailable)
	resp, err := s.Client.Get(s.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if why := string(body); !strings.Contains(why, "store unavailable: NATS not ready: disconnected from NATS") || strings.Contains(why, "store: unavailable") {
		t.Errorf("/readyz with NATS down: %s; want the reason said once", body)
	}
	for _, req := range []struct {
		path string
		body map[string]string
	}{
		{"/api/login", map[string]string{"username": "alice", "password": password}},
		{"/api/refresh", map[string]string{"refresh_token": tok.RefreshToken}},
	} {
		start := time.Now()
		code, body := s.Post(t, req.path, req.body)
		assertError(t, code, body, http.StatusServiceUnavailable, "unavailable")
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s took %v with NATS down; want an answer at once", req.path, d)
		}
	}

	nats.Restart(0)
	waitReady(t, s, http.StatusOK)
	refresh(t, s, tok.RefreshToken, http.StatusOK) // the outage rotated nothing
	s.Login(t, "alice", password)
}

// kvNode opens the KV store on its own NATS connection, as one node does.
func kvNode(t *testing.T, urls string) *kvstore.Store {
	t.Helper()
	conn, err := natsconn.Connect(natsconn.Options{URLs: []string{urls}, Logger: testlog.New(t, slog.LevelInfo),
		ReconnectWait: 50 * time.Millisecond, ProbeInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := kvstore.Open(ctx, conn, kvstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestSigningKeysFollowTheCluster: a key rotated on one node verifies on
// another at once, and a retired key stops verifying everywhere, without
// a restart.
func TestSigningKeysFollowTheCluster(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := signalingtest.Start(t, signalingtest.Options{Store: kvNode(t, urls)})
	b := signalingtest.Start(t, signalingtest.Options{Store: kvNode(t, urls)})
	a.Register(t, "alice", password)
	old := a.Login(t, "alice", password)
	if _, err := a.Keys().Rotate(); err != nil {
		t.Fatal(err)
	}
	tok := a.Login(t, "alice", password) // signed with the new key
	waitFor(t, "node b verifies node a's new key", func() bool { return ticket(t, b, tok.AccessToken) == http.StatusOK })
	kid := keyID(t, old.AccessToken)
	if err := a.Keys().Retire(kid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node b stops verifying the retired key", func() bool { return ticket(t, b, old.AccessToken) == http.StatusUnauthorized })
}

// TestKeysChangedWhileCutOffFollowAtOnce: a key rotated while a node
// was cut off from NATS verifies on that node as soon as its store is
// ready again. Its watch of the keys started again as the connection came
// back and saw the change, but the reload it asked for found the store
// not ready yet (the connection's probe had not run, or failed): refused,
// logged, and left until the next recheck, a minute later, while the
// node refused every token of the new key.
func TestKeysChangedWhileCutOffFollowAtOnce(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	link := natstest.NewProxy(t, urls)
	conn, err := natsconn.Connect(natsconn.Options{URLs: []string{link.URL()}, Logger: testlog.New(t, slog.LevelInfo),
		ReconnectWait: 50 * time.Millisecond, ProbeInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	var notYet atomic.Bool // holds b's store not ready after the cut, as a slow probe would
	conn.AddCheck(func(context.Context) error {
		if notYet.Load() {
			return errors.New("not yet")
		}
		return nil
	})
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bStore, err := kvstore.Open(ctx, conn, kvstore.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bStore.Close() })
	a := signalingtest.Start(t, signalingtest.Options{Store: kvNode(t, urls)})
	b := signalingtest.Start(t, signalingtest.Options{Store: bStore})
	a.Register(t, "alice", password)

	link.Cut()
	notYet.Store(true)
	waitReady(t, b, http.StatusServiceUnavailable)
	if _, err := a.Keys().Rotate(); err != nil {
		t.Fatal(err)
	}
	tok := a.Login(t, "alice", password) // signed with the new key
	link.Up()
	waitFor(t, "b's reload of the keys to be refused", func() bool {
		return metricstest.Value(t, reg, "khadga_kv_operations_total", map[string]string{"op": "signing_keys", "result": "unavailable"}) > 0
	})
	notYet.Store(false)
	waitReady(t, b, http.StatusOK)
	deadline := time.Now().Add(5 * time.Second) // well within the minute of the recheck
	for ticket(t, b, tok.AccessToken) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("node b still refuses the key rotated while it was cut off")
		}
		time.Sleep(20 * time.Millisecond) // polling the API under a deadline
	}
}

// TestKeyRetirementEndsSessionsEverywhere: a key retired by an admin
// command (its own store connection, no node) ends the sessions opened
// with its tokens on every node, each of which hears of it by its watch
// of the keys; not only on the node where it was retired.
func TestKeyRetirementEndsSessionsEverywhere(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := signalingtest.Start(t, signalingtest.Options{Store: kvNode(t, urls), NATS: urls})
	b := signalingtest.Start(t, signalingtest.Options{Store: kvNode(t, urls), NATS: urls})
	a.Register(t, "wit", password)
	a.Register(t, "vic", password)
	wit := a.Login(t, "wit", password)
	vic := a.Login(t, "vic", password)
	kid := keyID(t, vic.AccessToken)
	witOnA := a.Connect(t, wit.AccessToken, nil)
	vicOnB := b.Connect(t, vic.AccessToken, nil)

	admin, err := auth.NewKeys(kvNode(t, urls), auth.KeysOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Retire(kid); err != nil {
		t.Fatal(err)
	}
	witOnA.ExpectError(proto.CodeRevoked, "")
	vicOnB.ExpectError(proto.CodeRevoked, "")
	if code := ticket(t, b, vic.AccessToken); code != http.StatusUnauthorized {
		t.Fatalf("a ticket for a token of the retired key: %d, want 401", code)
	}
}

// ticket asks s for a WebSocket ticket with access and returns the status.
func ticket(t *testing.T, s *signalingtest.Server, access string) int {
	t.Helper()
	code, _ := s.Post(t, "/api/ws-ticket", "{}", "Authorization", "Bearer "+access)
	return code
}

// keyID is the kid in a JWT's header.
func keyID(t *testing.T, jwt string) string {
	t.Helper()
	head, _, _ := strings.Cut(jwt, ".")
	b, err := base64.RawURLEncoding.DecodeString(head)
	var h struct{ Kid string }
	if err != nil || json.Unmarshal(b, &h) != nil || h.Kid == "" {
		t.Fatalf("no kid in %q", head)
	}
	return h.Kid
}

// waitReady polls /readyz until it answers want.
func waitReady(t *testing.T, s *signalingtest.Server, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := s.Client.Get(s.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d, want %d", resp.StatusCode, want)
		}
		time.Sleep(50 * time.Millisecond) // polling the endpoint under a deadline
	}
}

// TestSignOutAfterPasswordChangeAcrossNodes: the socket of the sign-in
// that changed the password goes on with the new sign-in on every node,
// so that signing out on one node closes it on another.
func TestSignOutAfterPasswordChangeAcrossNodes(t *testing.T) {
	a, b, tok := twoNodes(t)
	onB := b.Connect(t, tok.AccessToken, nil)

	code, body := a.Post(t, "/api/password", map[string]string{"password": password, "new_password": "a brand new passphrase"},
		"Authorization", "Bearer "+tok.AccessToken)
	var fresh signalingtest.Tokens
	if code != 200 || json.Unmarshal(body, &fresh) != nil {
		t.Fatalf("password change: %d %s", code, body)
	}
	onB.Send(&proto.Message{Type: proto.TypePing, ID: "after-change"})
	onB.Expect(proto.TypePong) // the change did not end it
	if code, _ := a.Post(t, "/api/logout", map[string]string{"refresh_token": fresh.RefreshToken}); code != http.StatusNoContent {
		t.Fatalf("logout: %d", code)
	}
	onB.ExpectError(proto.CodeRevoked, "")
}

// TestTicketOnAnotherNode: behind a load balancer, a browser's ticket
// request and its WebSocket often reach different nodes. A ticket works
// on any node of the cluster, once.
func TestTicketOnAnotherNode(t *testing.T) {
	a, b, tok := twoNodes(t)
	q, err := url.ParseQuery(ticketQuery(t, a, tok.AccessToken))
	if err != nil {
		t.Fatal(err)
	}
	onB := b.Connect(t, "", q)
	if onB.Welcome.User != "pat" {
		t.Errorf("welcome for %q, want pat", onB.Welcome.User)
	}
	ctx, cancel := context.WithTimeout(context.Background(), signalingtest.Timeout)
	defer cancel()
	for _, s := range []*signalingtest.Server{a, b} {
		if _, resp, err := s.DialWS(ctx, "", q); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("the spent ticket again: %v, want 401", err)
		}
	}
	// A ticket that names a node that is not there is refused, not
	// waited on for long.
	q.Set("ticket", "nosuchnode00000~"+strings.Repeat("A", 43))
	if _, resp, err := b.DialWS(ctx, "", q); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a ticket of an unknown node: %v, want 401", err)
	}
}

// twoNodes starts two nodes of a cluster on one NATS server, with the
// account pat, and signs pat in on the first.
func twoNodes(t *testing.T) (a, b *signalingtest.Server, tok signalingtest.Tokens) {
	t.Helper()
	urls := natstest.Start(t).ClientURL()
	a = signalingtest.Start(t, signalingtest.Options{Store: kvNode(t, urls), NATS: urls})
	b = signalingtest.Start(t, signalingtest.Options{Store: kvNode(t, urls), NATS: urls})
	a.Register(t, "pat", password)
	return a, b, a.Login(t, "pat", password)
}

// TestConnLimitAcrossNodesBeforeUpgrade: with --max-conns-per-user 2,
// pat's WebSockets on two nodes are his two: a third, on either node, is
// refused before the upgrade (429 too_many_connections), as it would be
// on one node holding both.
func TestConnLimitAcrossNodesBeforeUpgrade(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	cfg := signaling.Config{MaxConnsPerUser: 2}
	a := signalingtest.Start(t, signalingtest.Options{Config: cfg, Store: kvNode(t, urls), NATS: urls})
	b := signalingtest.Start(t, signalingtest.Options{Config: cfg, Store: kvNode(t, urls), NATS: urls})
	a.Register(t, "pat", password)
	tok := a.Login(t, "pat", password)
	a.Connect(t, tok.AccessToken, nil)
	b.Connect(t, tok.AccessToken, nil)
	for _, s := range []*signalingtest.Server{a, b} {
		waitFor(t, "both nodes to count both connections", func() bool { n, _ := s.Hub().UserConns("pat"); return n == 2 })
	}
	ctx, cancel := context.WithTimeout(context.Background(), signalingtest.Timeout)
	defer cancel()
	for _, s := range []*signalingtest.Server{a, b} {
		if _, resp, err := s.DialWS(ctx, tok.AccessToken, nil); err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("a third WebSocket: %v, want 429", err)
		}
	}
}
