package kvstore

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/khadga/khadga/signaling/store"
)

// WriteTo writes a copy of every bucket and the audit log to w in the
// bbolt store format, which store.Check verifies and `khadga restore`
// loads: the records are copied (store.Copy) into a scratch bbolt file,
// which is then written out. Each bucket is read at once, so each is a
// consistent snapshot; the buckets are read one after another.
func (s *Store) WriteTo(w io.Writer) (n int64, err error) {
	dir, err := os.MkdirTemp("", "khadga-backup-*")
	if err != nil {
		return 0, fmt.Errorf("kvstore: backup: %w", err)
	}
	defer os.RemoveAll(dir)
	b, err := store.Open(filepath.Join(dir, "khadga.db"), store.Options{NoSync: true, AuditMax: s.opts.AuditMax,
		MaxFamiliesPerUser: s.opts.MaxFamiliesPerUser})
	if err != nil {
		return 0, fmt.Errorf("kvstore: backup: %w", err)
	}
	defer b.Close()
	if _, err := store.Copy(b, s); err != nil {
		return 0, fmt.Errorf("kvstore: backup: %w", err)
	}
	return b.WriteTo(w)
}

// Clear deletes every record of every bucket and the audit log, for a
// restore that replaces the cluster's data, and records this binary's
// schema version: every record from now on is its (a restore with an
// older release takes the cluster back to it; open the store with
// SchemaReplace for that). Nodes that run meanwhile see their users'
// sessions vanish; stop them first or expect sign-ins (and stop those of
// a newer release before going back to an older one: they would go on
// writing records the older release would rewrite without their new
// fields).
func (s *Store) Clear() error {
	return s.do("clear", listTimeout, func(ctx context.Context) error {
		js := s.conn.JetStream()
		for _, kv := range []interface{ Bucket() string }{s.accounts, s.families, s.rooms, s.keys, s.bots, s.secrets} {
			st, err := js.Stream(ctx, "KV_"+kv.Bucket())
			if err == nil {
				err = st.Purge(ctx)
			}
			if err != nil {
				return fmt.Errorf("kvstore: clear %s: %w", kv.Bucket(), err)
			}
		}
		if err := s.audit.Purge(ctx); err != nil {
			return fmt.Errorf("kvstore: clear the audit log: %w", err)
		}
		if _, err := s.health.Put(ctx, schemaKey, mySchema()); err != nil {
			return fmt.Errorf("kvstore: record the schema version: %w", err)
		}
		return nil
	})
}
