// Package store keeps khadga's durable state: users (with their TOTP and
// email state), refresh-token families, JWT signing keys, named secrets
// (such as the TURN REST secrets), the settings of claimed rooms and a
// bounded audit log.
//
// Backend is the contract the rest of khadga uses. It has two
// implementations: *Store here, one bbolt file for a single process, and
// kvstore.Store, NATS JetStream key-value for a cluster (--nats). Package
// storetest holds the one conformance suite both pass; Copy moves every
// record from one Backend to another (backups, migrations). Whoever adds a
// method to Backend implements it in both and adds its conformance case;
// see Backend's doc.
//
// In *Store every change is a single bbolt update transaction, so a crash
// loses nothing that was acknowledged, and every read-modify-write (for
// example rotating a refresh token) is atomic. Values are JSON, which lets
// later versions add fields without a migration. Structural changes go
// through the migrations table in schema.go.
//
// bbolt locks the file for one process at a time. A second Open of the same
// file fails after Options.Timeout with ErrInUse instead of hanging; admin
// commands should then talk to the running server instead.
//
// A Store is safe for concurrent use by many goroutines.
package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Default option values, used when the corresponding Options field is zero.
const (
	DefaultTimeout            = time.Second
	DefaultAuditMax           = 100_000
	DefaultMaxFamiliesPerUser = 100
)

// fileMode is the mode of the store file: it holds password hashes, signing
// keys and secrets, so only the owner may read it.
const fileMode os.FileMode = 0o600

var (
	// ErrNotFound is returned when the requested user, family or key does not
	// exist.
	ErrNotFound = errors.New("store: not found")
	// ErrUserExists is returned by CreateUser when the name is taken.
	ErrUserExists = errors.New("store: user already exists")
	// ErrKeyExists is returned by AddSigningKey when the key id is taken.
	ErrKeyExists = errors.New("store: signing key already exists")
	// ErrFamilyExists is returned by CreateFamily when the family id is taken.
	ErrFamilyExists = errors.New("store: token family already exists")
	// ErrRevoked is returned by RotateFamily when the family was revoked or
	// has expired.
	ErrRevoked = errors.New("store: token family revoked or expired")
	// ErrTokenReuse is returned by RotateFamily when the presented secret is
	// not the current one: an old refresh token was replayed, so the family
	// has been revoked.
	ErrTokenReuse = errors.New("store: refresh token reuse detected, family revoked")
	// ErrInUse is returned by Open when another process (or another Open in
	// this process) holds the file lock.
	ErrInUse = errors.New("store is in use by another process")
	// ErrSchemaTooNew is returned by Open when the file was written by a newer
	// khadga with a schema this binary does not know.
	ErrSchemaTooNew = errors.New("store schema is newer than this binary supports")
	// ErrCorrupt is returned by Check and Open for a file that is damaged
	// (truncated, or with pages bbolt cannot read) or is not a bbolt file
	// at all. Restore a backup (`khadga restore`).
	ErrCorrupt = errors.New("store file is damaged")
	// ErrInvalid is returned when an argument fails validation, for example an
	// empty user name.
	ErrInvalid = errors.New("store: invalid argument")
)

// Options tunes a Store. The zero value is usable.
type Options struct {
	// Timeout is how long Open waits for the file lock before returning
	// ErrInUse. Default DefaultTimeout.
	Timeout time.Duration
	// AuditMax is how many audit events are kept; older ones are trimmed.
	// Default DefaultAuditMax.
	AuditMax int
	// MaxFamiliesPerUser bounds the refresh-token families one user can hold
	// (one per login). Creating one more deletes the oldest. Default
	// DefaultMaxFamiliesPerUser.
	MaxFamiliesPerUser int
	// Logger receives open and migration messages. Default: discard.
	Logger *slog.Logger
	// NoSync skips the fsync after each change. Only for a scratch file
	// that is written once and then copied out (kvstore's backups): a
	// crash can corrupt such a file.
	NoSync bool
}

func (o *Options) setDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.AuditMax <= 0 {
		o.AuditMax = DefaultAuditMax
	}
	if o.MaxFamiliesPerUser <= 0 {
		o.MaxFamiliesPerUser = DefaultMaxFamiliesPerUser
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Store is khadga's bbolt-backed state. Create it with Open.
type Store struct {
	db   *bolt.DB
	path string
	opts Options
	log  *slog.Logger
}

// Open opens (creating if needed) the store at path. The parent directory is
// created with mode 0700 and the file with mode 0600; an existing file with
// looser permissions is tightened to 0600. It returns an error wrapping
// ErrInUse if the file is locked by another process after opts.Timeout, and
// one wrapping ErrSchemaTooNew if the file comes from a newer khadga. Older
// schemas are migrated in one transaction.
//
// Open reads every page of the file's buckets first (a few tens of
// milliseconds for a large store), so that a damaged file is an error
// wrapping ErrCorrupt here, which names the cure, instead of a crash when
// a request reads the damaged page later.
func Open(path string, opts Options) (*Store, error) {
	opts.setDefaults()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: create directory: %w", err)
	}
	s, err := open(path, opts)
	if errors.Is(err, ErrCorrupt) {
		err = fmt.Errorf("%w (restore a backup: khadga restore FILE)", err)
	}
	return s, err
}

// open is Open without the advice. It opens the file again if it was
// replaced while Open waited for its lock: a restore renames the backup
// over the store while it holds the old file's lock, and a server that
// opened the old file meanwhile would get that lock when the restore
// ends, and serve (and write) a file that no longer has a name.
func open(path string, opts Options) (*Store, error) {
	deadline := time.Now().Add(opts.Timeout)
	for {
		s, replaced, err := openOnce(path, opts)
		if !replaced {
			return s, err
		}
		s.Close()
		s.log.Info("store file replaced while waiting for its lock, opening it again", slog.String("path", path))
		if opts.Timeout = time.Until(deadline); opts.Timeout <= 0 {
			return nil, fmt.Errorf("store: open %s: %w (the file was replaced while waiting for its lock)", path, ErrInUse)
		}
	}
}

// openFile opens the store's file for bbolt; tests see when.
var openFile = os.OpenFile

// openOnce opens the file, in the goroutine that reads it first, where a
// fault on a damaged page is caught (guard). replaced reports that the
// file locked is no longer the one at path; s is then open.
func openOnce(path string, opts Options) (s *Store, replaced bool, err error) {
	var file *os.File // as bbolt opened it, to close it if opening panics
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(&err, "store: open "+path, func() {
		if s != nil {
			s.db.Close()
		} else if file != nil {
			file.Close()
		}
		s, replaced = nil, false
	})
	db, err := bolt.Open(path, fileMode, &bolt.Options{Timeout: opts.Timeout, NoSync: opts.NoSync,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := openFile(name, flag, perm)
			file = f
			return f, err
		}})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, false, fmt.Errorf("store: open %s: %w (waited %s for the file lock; stop the server or use its admin interface)", path, ErrInUse, opts.Timeout)
	}
	if err != nil {
		return nil, false, fmt.Errorf("store: open %s: %w", path, damaged(err))
	}
	s = &Store{db: db, path: path, opts: opts, log: opts.Logger}
	if same, err := sameFile(file, path); err != nil || !same {
		if err != nil {
			_ = db.Close()
			s = nil
		}
		return s, err == nil, err
	}
	if err := s.init(); err != nil {
		_ = db.Close()
		s = nil
		return nil, false, err
	}
	return s, false, nil
}

// sameFile reports whether f is the file at path.
func sameFile(f *os.File, path string) (bool, error) {
	held, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("store: stat %s: %w", path, err)
	}
	now, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: stat %s: %w", path, err)
	}
	return os.SameFile(held, now), nil
}

func (s *Store) init() error {
	if err := tightenMode(s.path, s.log); err != nil {
		return err
	}
	if err := s.db.View(walk); err != nil {
		return fmt.Errorf("store: open %s: %w", s.path, err)
	}
	return s.migrate()
}

// tightenMode makes sure a pre-existing file is not readable by others.
func tightenMode(path string, log *slog.Logger) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("store: stat %s: %w", path, err)
	}
	if fi.Mode().Perm()&^fileMode == 0 {
		return nil
	}
	log.Warn("store file permissions too open, setting 0600",
		slog.String("path", path), slog.String("mode", fi.Mode().Perm().String()))
	if err := os.Chmod(path, fileMode); err != nil {
		return fmt.Errorf("store: chmod %s: %w", path, err)
	}
	return nil
}

// Close closes the file and releases the lock. Methods called after Close
// return errors.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Path returns the file path the store was opened with.
func (s *Store) Path() string { return s.path }

// Ping checks that the store is open and readable, for readiness probes.
func (s *Store) Ping() error {
	err := s.db.View(func(tx *bolt.Tx) error {
		_, err := readVersion(tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// WriteTo writes a consistent copy of the whole store to w while other
// goroutines keep reading and writing (a hot backup). The copy is itself a
// valid store file.
//
// The copy is taken into a scratch file beside the store, and w gets it
// from there, with no transaction open: w is often a network client (the
// admin socket's backup), and bbolt cannot grow its memory map while a
// read transaction is open. Written to w from inside the transaction, a
// backup whose client read slowly or stopped made the first write that
// grew the file wait for that client, and every transaction after it
// (sign-ins, WebSocket upgrades, Close) wait for that write. The
// transaction now lasts as long as a copy on the local disk.
func (s *Store) WriteTo(w io.Writer) (int64, error) {
	f, err := os.CreateTemp(filepath.Dir(s.path), ".khadga-snapshot-*") // 0600: it holds password hashes
	if err != nil {
		return 0, fmt.Errorf("store: backup: %w", err)
	}
	// Unlinked at once where the system allows it, so that a crash leaves
	// nothing behind; elsewhere once it is closed.
	unlinked := os.Remove(f.Name()) == nil
	defer func() {
		f.Close()
		if !unlinked {
			os.Remove(f.Name())
		}
	}()
	if err := s.snapshot(f); err != nil {
		return 0, fmt.Errorf("store: backup: %w", err)
	}
	n, err := io.Copy(w, f)
	if err != nil {
		return n, fmt.Errorf("store: backup: %w", err)
	}
	return n, nil
}

// snapshot copies the store into f, in one read transaction, and rewinds
// f to its start.
func (s *Store) snapshot(f *os.File) error {
	err := s.db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(f)
		return err
	})
	if err != nil {
		return err
	}
	_, err = f.Seek(0, io.SeekStart)
	return err
}
