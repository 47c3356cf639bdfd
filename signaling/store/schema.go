package store

import (
	"encoding/binary"
	"fmt"
	"log/slog"

	bolt "go.etcd.io/bbolt"
)

// Bucket names. Keys are described next to each bucket.
var (
	bucketMeta       = []byte("meta")         // "version" -> uint64 big-endian
	bucketUsers      = []byte("users")        // name -> JSON User
	bucketFamilies   = []byte("families")     // family id -> JSON Family
	bucketUserFamily = []byte("user_family")  // name 0x00 created(be64 ns) id -> empty
	bucketKeys       = []byte("signing_keys") // key id -> JSON SigningKey
	bucketSecrets    = []byte("secrets")      // name -> raw bytes
	bucketAudit      = []byte("audit")        // seq (be64) -> JSON AuditEvent
)

var keyVersion = []byte("version")

// migrations[i] upgrades a store from schema version i to version i+1, inside
// the single update transaction that Open runs. Version 0 is an empty file.
// To change the schema, append a step; never edit or reorder existing ones.
var migrations = []func(tx *bolt.Tx) error{
	0: createV1,
}

// SchemaVersion is the schema this binary writes. It must equal
// len(migrations); TestSchemaVersion checks that.
const SchemaVersion uint64 = 1

// createV1 creates every bucket of schema version 1.
func createV1(tx *bolt.Tx) error {
	for _, b := range [][]byte{bucketMeta, bucketUsers, bucketFamilies,
		bucketUserFamily, bucketKeys, bucketSecrets, bucketAudit} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return fmt.Errorf("create bucket %s: %w", b, err)
		}
	}
	return nil
}

// readVersion returns the stored schema version, 0 for an empty file.
func readVersion(tx *bolt.Tx) (uint64, error) {
	b := tx.Bucket(bucketMeta)
	if b == nil {
		return 0, nil
	}
	v := b.Get(keyVersion)
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("store: corrupt schema version (%d bytes)", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// migrate brings the file to SchemaVersion, or refuses a newer schema.
func (s *Store) migrate() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		v, err := readVersion(tx)
		if err != nil {
			return err
		}
		if v > SchemaVersion {
			return fmt.Errorf("store: %s has schema version %d, this binary supports up to %d: %w",
				s.path, v, SchemaVersion, ErrSchemaTooNew)
		}
		for ; v < SchemaVersion; v++ {
			if err := migrations[v](tx); err != nil {
				return fmt.Errorf("store: migrate schema %d to %d: %w", v, v+1, err)
			}
			s.log.Info("store schema migrated", slog.Uint64("from", v), slog.Uint64("to", v+1))
		}
		return writeVersion(tx, v)
	})
}

func writeVersion(tx *bolt.Tx, v uint64) error {
	b, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return fmt.Errorf("store: meta bucket: %w", err)
	}
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], v)
	return b.Put(keyVersion, buf[:])
}

func be64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}
