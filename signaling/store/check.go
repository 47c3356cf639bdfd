package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

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
// modifies it), makes sure it is not truncated, reads every page that a
// bucket reaches, runs bbolt's page-level consistency check, verifies the
// schema version, every bucket and every user record, and counts the
// records. `khadga restore` runs it on a backup before replacing the live
// store. A damaged file is an error wrapping ErrCorrupt, never a crash:
// bbolt trusts the page numbers it reads, so a damaged one can send it
// past the end of the mapped file, which Check turns into that error. It
// fails with ErrInUse if a running server holds the file, and with
// ErrSchemaTooNew for a newer schema.
func Check(path string) (CheckInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return CheckInfo{}, fmt.Errorf("store: check: %w", err)
	}
	if fi.Size() == 0 {
		return CheckInfo{}, fmt.Errorf("store: check %s: %w: the file is empty", path, ErrCorrupt)
	}
	// First every page a bucket reaches, which bbolt reads without the
	// freelist; then, opened again with the freelist read where a fault
	// is caught, bbolt's check and the records.
	err = view(path, false, func(tx *bolt.Tx) error {
		if err := complete(tx, fi.Size()); err != nil {
			return err
		}
		return walk(tx)
	})
	if err != nil {
		return CheckInfo{}, err
	}
	info := CheckInfo{Size: fi.Size()}
	err = view(path, true, func(tx *bolt.Tx) error {
		if err := consistency(tx); err != nil {
			return err
		}
		return inspect(tx, &info)
	})
	if err != nil {
		return CheckInfo{}, err
	}
	return info, nil
}

// view opens the file at path read-only and runs fn in a read transaction,
// in this goroutine, turning a panic or a fault on the memory map into an
// error wrapping ErrCorrupt. With freelist, the freelist is read when the
// file is opened, instead of by the first tx.Check, in a goroutine of its
// own where a fault would kill the process.
func view(path string, freelist bool, fn func(tx *bolt.Tx) error) (err error) {
	var file *os.File // as bbolt opened it, to close it if opening panics
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(&err, "store: check "+path, func() {
		if file != nil {
			file.Close()
		}
	})
	db, err := bolt.Open(path, fileMode, &bolt.Options{ReadOnly: true, Timeout: DefaultTimeout, PreLoadFreelist: freelist,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		}})
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("store: check %s: %w", path, ErrInUse)
	}
	if err != nil {
		return fmt.Errorf("store: check %s: %w", path, damaged(err))
	}
	defer db.Close()
	if err := db.View(fn); err != nil {
		return fmt.Errorf("store: check %s: %w", path, err)
	}
	return nil
}

// guard turns a panic of bbolt's into an error wrapping ErrCorrupt in
// *err, prefixed with what, after running cleanup. The caller defers it in the goroutine that
// reads the file, after deferring debug.SetPanicOnFault(debug.SetPanicOnFault(true)),
// which makes a fault on the memory map such a panic.
func guard(err *error, what string, cleanup func()) {
	r := recover()
	if r == nil {
		return
	}
	cleanup()
	*err = fmt.Errorf("%s: %w: %v", what, ErrCorrupt, r)
}

// damaged marks the errors bbolt's Open gives for a file that is not a
// bbolt file, or a damaged one, as ErrCorrupt.
func damaged(err error) error {
	if errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum) ||
		errors.Is(err, berrors.ErrVersionMismatch) || errors.Is(err, berrors.ErrInvalidMapping) ||
		strings.Contains(err.Error(), "file size too small") {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// complete makes sure the file holds every page its meta page counts: a
// backup cut short (a full disk, an interrupted copy) is reported as such.
func complete(tx *bolt.Tx, size int64) error {
	if size < tx.Size() {
		return fmt.Errorf("%w: the file is truncated: %d bytes, its pages need %d", ErrCorrupt, size, tx.Size())
	}
	return nil
}

// walk reads every bucket, key and value, touching every page a bucket
// reaches, in the caller's goroutine, where guard catches a fault: bbolt's
// tx.Check runs in a goroutine of its own, where a fault kills the
// process.
func walk(tx *bolt.Tx) error {
	var sum byte
	var bucket func(b *bolt.Bucket) error
	bucket = func(b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				if sub := b.Bucket(k); sub != nil {
					return bucket(sub)
				}
			}
			for i := 0; i < len(v); i += 512 {
				sum ^= v[i]
			}
			return nil
		})
	}
	err := tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return bucket(b) })
	runtime.KeepAlive(sum) // the reads of the values must happen
	return err
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
		return fmt.Errorf("%w: %w", ErrCorrupt, errors.Join(errs...))
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
	if err := checkUsers(tx); err != nil {
		return err
	}
	// The other records a server reads at start, or at a sign-in.
	if err := decodes[Family](tx, bucketFamilies, "refresh-token family"); err != nil {
		return err
	}
	if err := decodes[SigningKey](tx, bucketKeys, "signing key"); err != nil {
		return err
	}
	if v >= 2 {
		if err := decodes[BotToken](tx, bucketBotTokens, "bot token"); err != nil {
			return err
		}
	}
	if v >= 3 {
		return decodes[Room](tx, bucketRooms, "room")
	}
	return nil
}

// decodes makes sure every record of bucket decodes as a T: a restore
// never installs a store whose server stops at start, or fails a sign-in,
// on a record it cannot read.
func decodes[T any](tx *bolt.Tx, bucket []byte, what string) error {
	return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
		var rec T
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("%w: %s %q does not decode", ErrInvalid, what, k)
		}
		return nil
	})
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
