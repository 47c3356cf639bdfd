package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// CheckInfo summarises a store file that passed Check.
type CheckInfo struct {
	Version     uint64 // schema version
	Size        int64  // file size in bytes
	Users       int
	Families    int
	SigningKeys int
	Secrets     int
	AuditEvents int
	BotTokens   int
	Rooms       int // claimed rooms (schema 3)
}

// maxCheckErrors bounds how many bbolt consistency errors Check collects.
const maxCheckErrors = 10

// Check opens the file at path read-only (it never creates, migrates or
// modifies it), runs bbolt's page-level consistency check, verifies the
// schema version, every bucket and every user record, and counts the
// records. `khadga restore` runs it on a backup before replacing the live
// store. It fails with ErrInUse if a running server
// holds the file, and with ErrSchemaTooNew for a newer schema.
func Check(path string) (CheckInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return CheckInfo{}, fmt.Errorf("store: check: %w", err)
	}
	db, err := bolt.Open(path, fileMode, &bolt.Options{ReadOnly: true, Timeout: DefaultTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return CheckInfo{}, fmt.Errorf("store: check %s: %w", path, ErrInUse)
	}
	if err != nil {
		return CheckInfo{}, fmt.Errorf("store: check %s: %w", path, err)
	}
	defer db.Close()
	info := CheckInfo{Size: fi.Size()}
	err = db.View(func(tx *bolt.Tx) error {
		if err := consistency(tx); err != nil {
			return err
		}
		return inspect(tx, &info)
	})
	if err != nil {
		return CheckInfo{}, fmt.Errorf("store: check %s: %w", path, err)
	}
	return info, nil
}

// consistency runs bbolt's own check and joins the first few errors.
func consistency(tx *bolt.Tx) error {
	var errs []error
	for err := range tx.Check() { // drain: Check's goroutine sends every error
		if len(errs) < maxCheckErrors {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("file is corrupt: %w", errors.Join(errs...))
	}
	return nil
}

// inspect checks the schema and counts the records of each bucket.
func inspect(tx *bolt.Tx, info *CheckInfo) error {
	v, err := readVersion(tx)
	if err != nil {
		return err
	}
	if v == 0 {
		return fmt.Errorf("%w: not a khadga store (no schema version)", ErrInvalid)
	}
	if v > SchemaVersion {
		return fmt.Errorf("schema version %d, this binary supports up to %d: %w", v, SchemaVersion, ErrSchemaTooNew)
	}
	info.Version = v
	counts := []struct {
		bucket []byte
		n      *int
	}{
		{bucketUsers, &info.Users}, {bucketFamilies, &info.Families},
		{bucketKeys, &info.SigningKeys}, {bucketSecrets, &info.Secrets},
		{bucketAudit, &info.AuditEvents}, {bucketUserFamily, new(int)},
	}
	if v >= 2 { // older files are migrated when opened
		counts = append(counts, struct {
			bucket []byte
			n      *int
		}{bucketBotTokens, &info.BotTokens})
	}
	if v >= 3 {
		counts = append(counts, []struct {
			bucket []byte
			n      *int
		}{{bucketRooms, &info.Rooms}, {bucketUserRoom, new(int)}}...)
	}
	for _, c := range counts {
		b := tx.Bucket(c.bucket)
		if b == nil {
			return fmt.Errorf("%w: bucket %s missing", ErrInvalid, c.bucket)
		}
		*c.n = b.Stats().KeyN
	}
	return checkUsers(tx)
}

// checkUsers makes sure every user record decodes and matches its key, so
// a restore never installs a store whose accounts cannot log in.
func checkUsers(tx *bolt.Tx) error {
	return tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
		var u User
		if err := json.Unmarshal(v, &u); err != nil || u.Name != string(k) {
			return fmt.Errorf("%w: user %q does not decode", ErrInvalid, k)
		}
		return nil
	})
}
