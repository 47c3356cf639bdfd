package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

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
	bucketBotTokens  = []byte("bot_tokens")   // token id -> JSON BotToken (schema 2)
	bucketRooms      = []byte("rooms")        // room name -> JSON Room (schema 3)
	bucketUserRoom   = []byte("user_room")    // owner 0x00 room -> empty (schema 3)
)

var keyVersion = []byte("version")

// migrations[i] upgrades a store from schema version i to version i+1, inside
// the single update transaction that Open runs. Version 0 is an empty file.
// To change the schema, append a step; never edit or reorder existing ones.
// A record that gains or changes a field needs a step too, even one that
// changes nothing: older binaries drop fields they do not know when they
// rewrite a record, and a newer version is what makes them refuse the
// file (TestRecordFields fails until the version goes up).
var migrations = []func(tx *bolt.Tx) error{
	0: createV1,
	1: addBotTokens,
	2: addRooms,
}

// SchemaVersion is the schema this binary writes. It must equal
// len(migrations); TestSchemaVersion checks that.
const SchemaVersion uint64 = 3

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

// addBotTokens (schema 2) records bot tokens, so that they can be listed
// and revoked. Bot tokens minted before it are access tokens nobody
// recorded, signed with the keys present now and living at most
// LegacyBotTokenTTL: each of those keys is marked as having signed tokens
// until then, so that rotating it keeps it verifying while they may live.
func addBotTokens(tx *bolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists(bucketBotTokens); err != nil {
		return fmt.Errorf("create bucket %s: %w", bucketBotTokens, err)
	}
	until := time.Now().UTC().Add(LegacyBotTokenTTL)
	b := tx.Bucket(bucketKeys)
	var marked []SigningKey
	err := b.ForEach(func(k, v []byte) error {
		var key SigningKey
		if err := json.Unmarshal(v, &key); err != nil {
			return fmt.Errorf("decode signing key %q: %w", k, err)
		}
		if !key.Retired && key.TokensUntil.Before(until) {
			key.TokensUntil = until
			marked = append(marked, key)
		}
		return nil
	})
	for _, key := range marked { // not inside ForEach, which must not write
		if err == nil {
			err = putJSON(b, []byte(key.ID), key)
		}
	}
	return err
}

// LegacyBotTokenTTL is the longest a bot token minted before schema 2
// could live (the old `khadga token --ttl` limit).
const LegacyBotTokenTTL = 30 * 24 * time.Hour

// addRooms (schema 3) adds room settings (rooms.go).
func addRooms(tx *bolt.Tx) error {
	for _, b := range [][]byte{bucketRooms, bucketUserRoom} {
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

// migrate brings the file to SchemaVersion, or refuses a newer schema. It
// says what it did once the transaction committed: a new file is created
// (its steps from schema 0 are how it is built, not a migration), an
// older one migrated.
func (s *Store) migrate() error {
	var from uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		v, err := readVersion(tx)
		if err != nil {
			return err
		}
		if v > SchemaVersion {
			return fmt.Errorf("store: %s has schema version %d, this binary supports up to %d: %w",
				s.path, v, SchemaVersion, ErrSchemaTooNew)
		}
		from = v
		for ; v < SchemaVersion; v++ {
			if err := migrations[v](tx); err != nil {
				return fmt.Errorf("store: migrate schema %d to %d: %w", v, v+1, err)
			}
		}
		return writeVersion(tx, v)
	})
	switch {
	case err != nil:
	case from == 0:
		s.log.Info("store created", slog.String("path", s.path), slog.Uint64("schema", SchemaVersion))
	case from < SchemaVersion:
		s.log.Info("store schema migrated", slog.String("path", s.path), slog.Uint64("from", from), slog.Uint64("to", SchemaVersion))
	}
	return err
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
