package store

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// CheckInfo describes a store file that passed Check.
type CheckInfo struct {
	Version uint64
	Users   int
}

// Check opens the file at path read-only and verifies that it is a khadga
// store this binary can use: bbolt's own consistency check, a known schema
// version, the buckets of that version, and users that decode. `khadga
// restore` runs it before replacing the live store with a backup.
func Check(path string) (CheckInfo, error) {
	db, err := bolt.Open(path, 0, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return CheckInfo{}, fmt.Errorf("store: check %s: %w", path, err)
	}
	defer db.Close()
	var info CheckInfo
	err = db.View(func(tx *bolt.Tx) error {
		var bad error
		for err := range tx.Check() { // drain: Check's goroutine sends every error
			if bad == nil {
				bad = fmt.Errorf("bbolt consistency: %w", err)
			}
		}
		if bad != nil {
			return bad
		}
		v, err := readVersion(tx)
		if err != nil {
			return err
		}
		if v == 0 {
			return fmt.Errorf("not a khadga store (no schema version)")
		}
		if v > SchemaVersion {
			return fmt.Errorf("%w: file has version %d, this binary %d", ErrSchemaTooNew, v, SchemaVersion)
		}
		info.Version = v
		for _, b := range [][]byte{bucketUsers, bucketFamilies, bucketKeys, bucketSecrets, bucketAudit} {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("bucket %q is missing", b)
			}
		}
		return tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
			var u User
			if err := json.Unmarshal(v, &u); err != nil || u.Name != string(k) {
				return fmt.Errorf("user %q does not decode", k)
			}
			info.Users++
			return nil
		})
	})
	if err != nil {
		return CheckInfo{}, fmt.Errorf("store: check %s: %w", path, err)
	}
	return info, nil
}
