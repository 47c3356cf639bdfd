package main

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/internal/testlog"
	"github.com/khadga/khadga/signaling/store"
	"github.com/khadga/khadga/turn"
)

// clusterSchema reads (and, with set > 0, first writes) the schema version
// the cluster on nats records, as nodes of another release would leave it.
func clusterSchema(t *testing.T, nats string, set uint64) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(natstest.Connect(t, nats))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "khadga-health")
	if err != nil {
		t.Fatal(err)
	}
	if set > 0 {
		if _, err := kv.Put(ctx, "schema", []byte(strconv.FormatUint(set, 10))); err != nil {
			t.Fatal(err)
		}
	}
	e, err := kv.Get(ctx, "schema")
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestTURNNodesStartBesideNodesOfAnotherRelease: `khadga turn --nats`
// reads the TURN secrets and nothing else, so it starts whatever schema
// the cluster's nodes recorded, and records none: a TURN node of an older
// release starts beside nodes of a newer one, and one of a newer release
// leaves the nodes of an older one able to restart. A TURN node refused
// the first (ErrSchemaTooNew: TURN scale-out stopped by an upgrade of the
// signaling nodes), and raised the version in the second, after which
// the signaling nodes of the older release no longer started.
func TestTURNNodesStartBesideNodesOfAnotherRelease(t *testing.T) {
	nats := natstest.Start(t).ClientURL()
	clusterStore(context.Background(), t, nats) // the buckets, as a node makes them
	for _, tc := range []struct {
		name  string
		nodes uint64 // the nodes' schema version
	}{
		{"nodes of a newer release", store.SchemaVersion + 1},
		{"nodes of an older release", store.SchemaVersion - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clusterSchema(t, nats, tc.nodes)
			o, err := loadTurn(t, "--turn-listen", "127.0.0.1:0", "--nats", nats)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done, ready := make(chan error, 1), make(chan *turn.Server, 1)
			go func() {
				done <- serveTURN(ctx, o, testlog.New(t, slog.LevelInfo), func(s *turn.Server, _ net.Addr) { ready <- s })
			}()
			select {
			case s := <-ready:
				if len(s.ICEConfig().Secret) == 0 {
					t.Error("the TURN node has no secret")
				}
			case err := <-done:
				t.Fatalf("khadga turn --nats beside %s: %v", tc.name, err)
			case <-time.After(20 * time.Second):
				t.Fatal("serveTURN did not start")
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("serveTURN: %v", err)
			}
			if v := clusterSchema(t, nats, 0); v != tc.nodes {
				t.Fatalf("the TURN node changed the cluster's schema version from %d to %d", tc.nodes, v)
			}
		})
	}
}

// TestRestoreIntoAClusterOfANewerRelease: the way back from an upgrade
// that raised the schema version (docs/operations.md) is to restore the
// backup taken before it with the older release. `khadga restore --nats`
// replaces every record, so it takes a cluster whatever version its
// nodes recorded and leaves its own: nodes of its release then start. It
// was refused (ErrSchemaTooNew), and a restore with the newer release
// left the newer version, so no node of the older release could start
// again without a hand-made change to the health bucket.
func TestRestoreIntoAClusterOfANewerRelease(t *testing.T) {
	nats := natstest.Start(t).ClientURL()
	dir := t.TempDir()
	if out, err := run(t, dir, "a long admin password\n", "user", "add", "root", "--role", "admin", "--nats", nats); err != nil {
		t.Fatalf("user add --nats: %v\n%s", err, out)
	}
	backup := filepath.Join(t.TempDir(), "before.db")
	if out, err := run(t, dir, "", "backup", backup, "--nats", nats); err != nil {
		t.Fatalf("backup --nats: %v\n%s", err, out)
	}
	clusterSchema(t, nats, store.SchemaVersion+1) // the upgrade
	if out, err := run(t, dir, "", "user", "list", "--nats", nats); err == nil || !strings.Contains(out, "newer") {
		t.Fatalf("user list --nats on a cluster of a newer release: %v\n%s; want a refusal", err, out)
	}
	if out, err := run(t, dir, "", "restore", backup, "--nats", nats); err != nil || !strings.Contains(out, "1 user,") {
		t.Fatalf("restore --nats into a cluster of a newer release: %v\n%s", err, out)
	}
	if v := clusterSchema(t, nats, 0); v != store.SchemaVersion {
		t.Fatalf("after the restore the cluster records schema %d, want the restoring release's %d", v, store.SchemaVersion)
	}
	if out, err := run(t, dir, "", "user", "list", "--nats", nats); err != nil || !strings.Contains(out, "root") {
		t.Fatalf("user list --nats after the restore: %v\n%s", err, out)
	}
}

// TestAdminCommandsOfANewerRelease: an admin command run with a newer
// release than the cluster's nodes (from a laptop, say) is refused, with
// what to do, and leaves the version alone. It raised the version, after
// which the nodes of the cluster's own release no longer restarted; and
// had it left the version alone while writing, those nodes would have
// dropped what it wrote when they next rewrote a record. A cluster with
// no version yet (set up before its first node starts) takes the
// command's.
func TestAdminCommandsOfANewerRelease(t *testing.T) {
	nats := natstest.Start(t).ClientURL()
	dir := t.TempDir()
	if out, err := run(t, dir, "a long admin password\n", "user", "add", "root", "--role", "admin", "--nats", nats); err != nil {
		t.Fatalf("user add --nats on a new cluster: %v\n%s", err, out)
	}
	if v := clusterSchema(t, nats, 0); v != store.SchemaVersion {
		t.Fatalf("a new cluster set up by an admin command records schema %d, want %d", v, store.SchemaVersion)
	}
	clusterSchema(t, nats, store.SchemaVersion-1) // nodes of the release before
	out, err := run(t, dir, "", "user", "list", "--nats", nats)
	if err == nil || !strings.Contains(out, "older khadga") {
		t.Fatalf("user list --nats with a newer release than the nodes': %v\n%s; want a refusal that says why", err, out)
	}
	if v := clusterSchema(t, nats, 0); v != store.SchemaVersion-1 {
		t.Fatalf("the refused command changed the cluster's schema version to %d", v)
	}
}
