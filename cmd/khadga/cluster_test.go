package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/config"
	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/internal/testlog"
	"github.com/khadga/khadga/signaling/store"
	"github.com/khadga/khadga/turn"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// tokens is what login and refresh answer.
type tokens struct {
	Access  string `json:"access_token"`
	Refresh string `json:"refresh_token"`
}

func login(t *testing.T, url, user, password string) tokens {
	t.Helper()
	code, body := post(t, url+"/api/login", `{"username":"`+user+`","password":"`+password+`"}`)
	if code != http.StatusOK {
		t.Fatalf("login %s at %s: %d %s", user, url, code, body)
	}
	var tok tokens
	json.Unmarshal([]byte(body), &tok)
	return tok
}

// refreshAt trades rt at url and checks the status; it returns the new pair.
func refreshAt(t *testing.T, url, rt string, want int) tokens {
	t.Helper()
	code, body := post(t, url+"/api/refresh", `{"refresh_token":"`+rt+`"}`)
	if code != want {
		t.Fatalf("refresh at %s: %d %s, want %d", url, code, body, want)
	}
	var tok tokens
	json.Unmarshal([]byte(body), &tok)
	return tok
}

// bearerOK checks that url accepts access for a WebSocket ticket: the
// token verifies there (its signing key is known) and its account is alive.
func bearerOK(t *testing.T, url, access string) {
	t.Helper()
	if code := ticketStatus(t, url, access); code != http.StatusOK {
		t.Fatalf("ticket with the access token at %s: %d", url, code)
	}
}

const alicePassword = "correct horse battery"

// TestServeOnNATS runs two `khadga serve --nats` nodes on one NATS server:
// an account made on one signs in on the other, a refresh token from one
// rotates on the other, and the admin commands, backup and restore work
// on the cluster with --nats, and so does token (mint and revoke).
func TestServeOnNATS(t *testing.T) {
	nats := natstest.Start(t).ClientURL()
	env := []string{"KHADGA_NATS=" + nats, "KHADGA_TURN_LISTEN=off", "KHADGA_NATS_REVOCATION_AGE=25m"}
	n1 := startServe(t, t.TempDir(), env...)
	n2 := startServe(t, t.TempDir(), env...)
	if age := streamConfig(t, nats, "khadga-revocations").MaxAge; age != 25*time.Minute {
		t.Errorf("the revocation stream keeps revocations %v, want --nats-revocation-age's 25m", age)
	}
	if code, body := post(t, n1.url+"/api/register", `{"username":"alice","password":"`+alicePassword+`"}`); code != 201 {
		t.Fatalf("register on node 1: %d %s", code, body)
	}
	tok := login(t, n2.url, "alice", alicePassword)
	bearerOK(t, n1.url, tok.Access)
	next := refreshAt(t, n1.url, tok.Refresh, http.StatusOK)
	refreshAt(t, n2.url, tok.Refresh, http.StatusUnauthorized)  // reuse, seen on the other node
	refreshAt(t, n1.url, next.Refresh, http.StatusUnauthorized) // the family is revoked everywhere
	// What an operator sees of the cluster on a node: every metric is
	// documented, and these are the ones the cluster's docs point to.
	found := metricsDocumented(t, n1.url)
	for _, m := range []string{"khadga_nats_ready", "khadga_nats_jetstream_rtt_seconds", "khadga_cluster_nats_rtt_seconds",
		"khadga_cluster_nats_messages_in_total", "khadga_cluster_nats_messages_out_total", "khadga_kv_operations_total",
		"khadga_kv_operation_seconds", "khadga_cluster_kv_errors_total"} {
		if !found[m] {
			t.Errorf("node 1's /metrics has no %s", m)
		}
	}

	dir := t.TempDir() // no data of its own: everything is in the cluster
	if out, err := run(t, dir, "a long admin password\n", "user", "add", "root", "--role", "admin", "--nats", nats); err != nil {
		t.Fatalf("user add --nats: %v\n%s", err, out)
	}
	login(t, n2.url, "root", "a long admin password")
	backup := filepath.Join(t.TempDir(), "cluster.db")
	if out, err := run(t, dir, "", "backup", backup, "--nats", nats); err != nil {
		t.Fatalf("backup --nats: %v\n%s", err, out)
	}
	if info, err := store.Check(backup); err != nil || info.Users != 2 || info.SigningKeys == 0 || info.Families != 2 {
		t.Fatalf("the cluster's backup: %+v, %v", info, err)
	}
	if out, err := run(t, dir, "", "user", "delete", "root", "--nats", nats); err != nil {
		t.Fatalf("user delete --nats: %v\n%s", err, out)
	}
	if out, _ := run(t, dir, "", "user", "list", "--nats", nats); strings.Contains(out, "root") || !strings.Contains(out, "alice") {
		t.Fatalf("user list --nats after delete:\n%s", out)
	}
	if out, err := run(t, dir, "", "restore", backup, "--nats", nats); err != nil || !strings.Contains(out, "2 users") {
		t.Fatalf("restore --nats: %v\n%s", err, out)
	}
	login(t, n1.url, "root", "a long admin password")

	// A bot token minted on the cluster buys access tokens on a node, and
	// its revocation on the cluster reaches the other.
	out, err := run(t, dir, "", "token", "--user", "rec", "--role", "recorder", "--room", "lab", "--refresh", "--nats", nats)
	bot, id := strings.TrimSpace(strings.Split(out, "\n")[0]), regexp.MustCompile(`id (\S+),`).FindStringSubmatch(out)
	if err != nil || !strings.HasPrefix(bot, "kbt_") || id == nil {
		t.Fatalf("token --refresh --nats: %v\n%s", err, out)
	}
	botRefresh := `{"refresh_token":"` + bot + `"}`
	if code, body := post(t, n2.url+"/api/refresh", botRefresh); code != http.StatusOK {
		t.Fatalf("the cluster's bot token at node 2: %d %s", code, body)
	}
	if out, err := run(t, dir, "", "token", "revoke", id[1], "--nats", nats); err != nil {
		t.Fatalf("token revoke --nats: %v\n%s", err, out)
	}
	if code, body := post(t, n1.url+"/api/refresh", botRefresh); code != http.StatusUnauthorized {
		t.Fatalf("the revoked bot token at node 1: %d %s, want 401", code, body)
	}
	n1.stop(t)
	n2.stop(t)
}

// streamConfig is the settings of the stream name on the NATS servers at
// urls.
func streamConfig(t *testing.T, urls, name string) jetstream.StreamConfig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(natstest.Connect(t, urls))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.Config
}

// TestRevocationAgeBounds: a revocation age the cluster could not use is
// refused before anything connects, naming the flag.
func TestRevocationAgeBounds(t *testing.T) {
	for _, age := range []string{"30s", "200h"} {
		out, err := run(t, t.TempDir(), "", "serve", "--nats", "nats://127.0.0.1:1", "--nats-revocation-age", age)
		if err == nil || !strings.Contains(out, "--nats-revocation-age "+age) || !strings.Contains(out, "want 1m to 168h") {
			t.Errorf("--nats-revocation-age %s: %v\n%s", age, err, out)
		}
	}
}

// TestMigrateIntoCluster moves a single-node install into a cluster: the
// users sign in there, an access token issued by the old server is valid
// (the signing keys came along), and a refresh token issued there works
// exactly once more, after which rotation and the reuse rule behave as
// before.
func TestMigrateIntoCluster(t *testing.T) {
	dir := t.TempDir()
	single := startServe(t, dir)
	if code, body := post(t, single.url+"/api/register", `{"username":"alice","password":"`+alicePassword+`"}`); code != 201 {
		t.Fatalf("register: %d %s", code, body)
	}
	tok := refreshAt(t, single.url, login(t, single.url, "alice", alicePassword).Refresh, http.StatusOK)
	single.stop(t)

	nats := natstest.Start(t).ClientURL()
	from := filepath.Join(dir, "khadga-data", "khadga.db")
	out, err := run(t, t.TempDir(), "", "migrate", "--nats", nats, "--from", from)
	if err != nil || !strings.Contains(out, "1 user, 1 refresh-token family, 1 signing key") {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	node := startServe(t, t.TempDir(), "KHADGA_NATS="+nats, "KHADGA_TURN_LISTEN=off")
	bearerOK(t, node.url, tok.Access)
	next := refreshAt(t, node.url, tok.Refresh, http.StatusOK) // the old token, once
	refreshAt(t, node.url, tok.Refresh, http.StatusUnauthorized)
	refreshAt(t, node.url, next.Refresh, http.StatusUnauthorized) // reuse revoked the family
	login(t, node.url, "alice", alicePassword)

	if out, err := run(t, t.TempDir(), "", "migrate", "--nats", nats, "--from", from); err == nil || !strings.Contains(out, "holds 1 user already") {
		t.Fatalf("a second migrate: %v\n%s", err, out)
	}
	node.stop(t)
}

// TestTURNSecretsFollowTheCluster runs two `khadga turn --nats` servers on
// one NATS server: both take the cluster's secret, and a rotation reaches
// both without a restart; the previous secret keeps working until the
// next rotation drops it.
func TestTURNSecretsFollowTheCluster(t *testing.T) {
	nats := natstest.Start(t).ClientURL()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var servers []*turn.Server
	done := make(chan error, 2)
	for range 2 {
		o, err := loadTurn(t, "--turn-listen", "127.0.0.1:0", "--nats", nats)
		if err != nil {
			t.Fatal(err)
		}
		ready := make(chan *turn.Server, 1)
		go func() {
			done <- serveTURN(ctx, o, testlog.New(t, slog.LevelInfo), func(s *turn.Server, _ net.Addr) { ready <- s })
		}()
		select {
		case s := <-ready:
			servers = append(servers, s)
		case err := <-done:
			t.Fatalf("serveTURN: %v", err)
		case <-time.After(20 * time.Second):
			t.Fatal("serveTURN did not start")
		}
	}
	st := clusterStore(ctx, t, nats)
	first, err := storedTURNSecrets(st)
	if err != nil || len(first) != 1 {
		t.Fatalf("stored secrets %d, %v", len(first), err)
	}
	for _, s := range servers {
		if !bytes.Equal(s.ICEConfig().Secret, first[0]) {
			t.Fatal("a TURN server does not mint with the cluster's secret")
		}
		if _, _, err := allocate(t, s.UDPAddr().String(), string(first[0])); err != nil {
			t.Fatalf("allocate with the cluster's secret: %v", err)
		}
	}

	rotate := func() []byte {
		t.Helper()
		if _, err := rotateTURNSecret(st); err != nil {
			t.Fatal(err)
		}
		secrets, err := storedTURNSecrets(st)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range servers {
			deadline := time.Now().Add(10 * time.Second)
			for !bytes.Equal(s.ICEConfig().Secret, secrets[0]) {
				if time.Now().After(deadline) {
					t.Fatalf("TURN server %d still mints with the old secret 10 s after the rotation", i)
				}
				time.Sleep(20 * time.Millisecond) // polling the server under a deadline
			}
		}
		return secrets[0]
	}
	second := rotate()
	for _, s := range servers {
		for _, secret := range [][]byte{second, first[0]} { // the new one, and the previous one still
			if _, _, err := allocate(t, s.UDPAddr().String(), string(secret)); err != nil {
				t.Fatalf("allocate after a rotation: %v", err)
			}
		}
	}
	rotate()
	for _, s := range servers {
		if _, _, err := allocate(t, s.UDPAddr().String(), string(first[0])); err == nil {
			t.Fatal("the secret two rotations old still allocates")
		}
	}
	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("serveTURN: %v", err)
		}
	}
}

// TestAdminCommandsKeepTheClustersReplicas: an admin command run with
// --nats and without the nodes' --nats-replicas (as docs/cluster.md shows
// it, through docker compose exec) leaves the buckets and the audit stream
// as the nodes made them. It used to bring every one of them down to one
// copy.
func TestAdminCommandsKeepTheClustersReplicas(t *testing.T) {
	nats := natstest.StartCluster(t, 3)
	var c natsConfig
	if err := config.Defaults(&c); err != nil {
		t.Fatal(err)
	}
	c.URLs, c.Replicas = []string{nats.URLs()}, 3
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := c.openNode(ctx, "node", adminLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ns.close()
	replicas := func(name string) int { return streamConfig(t, nats.URLs(), name).Replicas }
	streams := []string{"KV_khadga-accounts", "KV_khadga-families", "KV_khadga-signing-keys", "khadga-audit"}
	for _, s := range streams {
		if r := replicas(s); r != 3 {
			t.Fatalf("the node made %s with %d replicas, want 3", s, r)
		}
	}
	if out, err := run(t, t.TempDir(), "", "user", "list", "--nats", nats.Servers[0].ClientURL()); err != nil {
		t.Fatalf("user list: %v\n%s", err, out)
	}
	for _, s := range streams {
		if r := replicas(s); r != 3 {
			t.Errorf("after khadga user list --nats URL: %s has %d replicas, want 3", s, r)
		}
	}
}

// TestANodeKeepsTheClustersReplicas: a node started without
// --nats-replicas (default 1) on a cluster whose nodes keep three copies
// leaves every bucket and stream at three. It took them all down to one,
// without a word: one NATS server lost then lost data.
func TestANodeKeepsTheClustersReplicas(t *testing.T) {
	nats := natstest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, replicas := range []int{3, 1} {
		var c serveConfig
		if err := config.Defaults(&c); err != nil {
			t.Fatal(err)
		}
		c.NATS.URLs, c.NATS.Replicas = []string{nats.URLs()}, replicas
		ns, err := c.NATS.openNode(ctx, "node", adminLogger(), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.clusterNode(ctx, ns, adminLogger(), nil)
		ns.close()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{"KV_khadga-accounts", "KV_khadga-health", "khadga-audit", "KV_khadga-sessions", "khadga-revocations"} {
		if r := streamConfig(t, nats.URLs(), s).Replicas; r != 3 {
			t.Errorf("after a node with --nats-replicas 1: %s has %d replicas, want 3", s, r)
		}
	}
}

// TestNodesStartTogetherOnANewCluster: three nodes that start at once on
// a new three-server NATS cluster (a new install with Compose or
// Kubernetes) all open the store and join within seconds. Each asked
// JetStream to update the buckets before creating them, an update that
// met a bucket another node was creating went unanswered, and the nodes
// waited out timeouts for 45 s (before that, two of them exited).
func TestNodesStartTogetherOnANewCluster(t *testing.T) {
	nats := natstest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	errs := make(chan error, len(nats.Servers))
	for _, s := range nats.Servers {
		go func() {
			var c serveConfig
			if err := config.Defaults(&c); err != nil {
				errs <- err
				return
			}
			c.NATS.URLs, c.NATS.Replicas = []string{s.ClientURL()}, 3
			ns, err := c.NATS.openNode(ctx, "node", adminLogger(), nil)
			if err == nil {
				_, err = c.clusterNode(ctx, ns, adminLogger(), nil)
				ns.close()
			}
			errs <- err
		}()
	}
	for range nats.Servers {
		if err := <-errs; err != nil {
			t.Errorf("a node started with the others: %v", err)
		}
	}
}

// TestStopWhileWaitingForNATS: a node stopped (SIGTERM) while it waits
// for NATS at start exits with status 0, as one stopped while it runs
// does. It exited with 1 and "opening the store on NATS: ... (context
// canceled)", which a service manager reports as a failure.
func TestStopWhileWaitingForNATS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "nats://" + ln.Addr().String()
	ln.Close() // nobody answers there
	p := startServeUntil(t, t.TempDir(), "NATS not reachable yet", "KHADGA_NATS="+down, "KHADGA_TURN_LISTEN=off")
	p.stop(t)
}

// TestReplicasPastTheServersNameTheFlag: a node with --nats-replicas 3
// on one NATS server is refused with the flag named; JetStream's own
// words ("replicas > 1 not supported in non-clustered mode") were all
// the operator got.
func TestReplicasPastTheServersNameTheFlag(t *testing.T) {
	var c natsConfig
	if err := config.Defaults(&c); err != nil {
		t.Fatal(err)
	}
	c.URLs, c.Replicas = []string{natstest.Start(t).ClientURL()}, 3
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := c.openNode(ctx, "node", adminLogger(), nil)
	if err == nil {
		ns.close()
		t.Fatal("a node with 3 replicas on one NATS server started")
	}
	if !strings.Contains(err.Error(), "--nats-replicas 3") {
		t.Fatalf("error %q does not name --nats-replicas", err)
	}
}

// TestRestoreRefusesARunningNode: restore without --nats on a cluster
// node's data directory (whose data is in NATS, not in the file) is
// refused while the node answers on the admin socket, and says to use
// --nats. It used to swap a file the node never reads and say "restored".
func TestRestoreRefusesARunningNode(t *testing.T) {
	nats := natstest.Start(t).ClientURL()
	dir := t.TempDir()
	startServe(t, dir, "KHADGA_NATS="+nats, "KHADGA_TURN_LISTEN=off")
	if out, err := run(t, dir, alicePassword+"\n", "user", "add", "alice"); err != nil {
		t.Fatalf("user add: %v %s", err, out)
	}
	if out, err := run(t, dir, "", "backup", "b.db"); err != nil {
		t.Fatalf("backup: %v %s", err, out)
	}
	out, err := run(t, dir, "", "restore", "b.db")
	if err == nil || !strings.Contains(out, "--nats") {
		t.Fatalf("restore on a running node: %v\n%s; want a refusal that names --nats", err, out)
	}
}

// clusterStore opens the store of the cluster on nats as an admin command
// does, closed when the test ends.
func clusterStore(ctx context.Context, t *testing.T, nats string) store.Backend {
	t.Helper()
	var a adminConfig
	if err := config.Defaults(&a); err != nil {
		t.Fatal(err)
	}
	a.NATS.URLs = []string{nats}
	st, closeFn, err := a.openStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeFn)
	return st
}

// TestMigrateLeavesTheSourceAsItWas: migrate reads the single node's file
// and changes nothing in it, so the old binary can still open it (the way
// back). It used to open the file as a store, which migrated its schema in
// place: a schema 1 file came out as the newest schema, which an older
// khadga refuses.
func TestMigrateLeavesTheSourceAsItWas(t *testing.T) {
	from := filepath.Join(t.TempDir(), "khadga.db")
	db, err := bolt.Open(from, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { // schema 1, as the first khadga wrote it
		for _, b := range []string{"meta", "users", "families", "user_family", "signing_keys", "secrets", "audit"} {
			if _, err := tx.CreateBucket([]byte(b)); err != nil {
				return err
			}
		}
		u, _ := json.Marshal(store.User{Name: "ann", PasswordHash: "$argon2id$x", Role: "user", Created: time.Now().UTC()})
		if err := tx.Bucket([]byte("users")).Put([]byte("ann"), u); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("version"), []byte{0, 0, 0, 0, 0, 0, 0, 1})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	nats := natstest.Start(t).ClientURL()
	out, err := run(t, t.TempDir(), "", "migrate", "--nats", nats, "--from", from)
	if err != nil || !strings.Contains(out, "1 user,") {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	if info, err := store.Check(from); err != nil || info.Version != 1 {
		t.Errorf("the source after migrate: %+v, %v; want schema 1 still", info, err)
	}
	if after, err := os.ReadFile(from); err != nil || !bytes.Equal(before, after) {
		t.Errorf("migrate changed the source file (%v)", err)
	}
}
