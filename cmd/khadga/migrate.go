package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/khadga/khadga/signaling/store"
	"github.com/khadga/khadga/signaling/store/kvstore"
)

// migrateConfig is the configuration of `khadga migrate`.
type migrateConfig struct {
	From string     `yaml:"from" default:"khadga-data/khadga.db" usage:"the single-node store file to copy (its server stopped)"`
	NATS natsConfig `yaml:",inline"`
}

var migrateCommand = command("khadga migrate", "khadga migrate --nats URL[,URL...] [--from khadga-data/khadga.db]",
	"Copy a single-node install into a cluster's JetStream store: users with their two-factor and email state, "+
		"refresh-token families (a signed-in user stays signed in), signing keys (issued tokens stay valid), bot tokens, "+
		"room settings, the TURN secret and the audit log. Stop the single-node server first. The cluster must hold no "+
		"users yet; `khadga restore --nats` replaces a cluster's data instead.",
	"khadga migrate --nats nats://nats-0:4222,nats://nats-1:4222,nats://nats-2:4222 --nats-replicas 3 --from /var/lib/khadga/khadga.db")

func runMigrate(ctx context.Context, args []string) error {
	var c migrateConfig
	if err := loadNoArgs(&c, migrateCommand, args); err != nil {
		return err
	}
	if !c.NATS.enabled() {
		return errors.New("migrate: --nats is required: the cluster to copy into")
	}
	if err := mustExist(c.From); err != nil {
		return fmt.Errorf("migrate: --from: %w", err)
	}
	// A copy taken under the file's lock (the single-node server is
	// stopped) and checked: opening a store may migrate its schema, and
	// the file must stay as it was, the way back.
	dir, err := os.MkdirTemp("", "khadga-migrate-*")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "khadga.db")
	if err := store.Snapshot(tmp, c.From, 2*time.Second); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := store.Check(tmp); err != nil {
		return fmt.Errorf("migrate: %s: %w", c.From, err)
	}
	src, err := store.Open(tmp, store.Options{NoSync: true})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer src.Close()
	ctx, cancel := context.WithTimeout(ctx, natsOpenWait)
	defer cancel()
	ns, err := c.NATS.open(ctx, "khadga migrate", adminLogger(), nil, kvstore.SchemaCheck)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer ns.close()
	users, err := ns.store.ListUsers()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if len(users) > 0 {
		return fmt.Errorf("migrate: the cluster holds %s already, nothing was copied; "+
			"`khadga restore --nats` replaces a cluster's data with a backup", count(len(users), "user"))
	}
	st, err := store.Copy(ns.store, src)
	if err != nil {
		return fmt.Errorf("migrate: %w (the cluster holds a partial copy: `khadga restore --nats URL %s` replaces it with the whole file, which migrate left as it was)", err, c.From)
	}
	printCopied(os.Stderr, "migrated "+c.From, st)
	return nil
}

// restoreCluster replaces the cluster's data with the backup file: it
// empties every bucket and the audit stream, then copies the backup in.
func restoreCluster(ctx context.Context, a *adminConfig, backup, name string, info store.CheckInfo) error {
	// Opening a store may migrate its schema: work on a copy of the backup.
	dir, err := os.MkdirTemp("", "khadga-restore-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "khadga.db")
	if err := copyFile(tmp, backup); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	src, err := store.Open(tmp, store.Options{NoSync: true})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer src.Close()
	ctx, cancel := context.WithTimeout(ctx, natsOpenWait)
	defer cancel()
	ns, err := a.NATS.open(ctx, "khadga restore", adminLogger(), nil, kvstore.SchemaReplace)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer ns.close()
	if err := ns.store.Clear(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	st, err := store.Copy(ns.store, src)
	if err != nil {
		return fmt.Errorf("restore: %w (the cluster holds a partial copy: run the restore again)", err)
	}
	printCopied(os.Stderr, fmt.Sprintf("restored %s (schema %d) into the cluster", name, info.Version), st)
	return nil
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return store.WriteFile(dst, func(w io.Writer) error { _, err := io.Copy(w, in); return err })
}

func printCopied(w io.Writer, what string, st store.CopyStats) {
	fmt.Fprintf(w, "%s: %s, %s, %s, %s, %s, %s, %s\n", what,
		count(st.Users, "user"), count(st.Families, "refresh-token family"), count(st.SigningKeys, "signing key"),
		count(st.BotTokens, "bot token"), count(st.Rooms, "room"), count(st.Secrets, "secret"), count(st.AuditEvents, "audit event"))
}

// count says n of thing, in the plural unless n is 1.
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	if strings.HasSuffix(thing, "ily") { // family, not key
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(thing, "y"))
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
