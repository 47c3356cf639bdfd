package kvstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/khadga/khadga/signaling/store"
)

// Schema is what Open does with the schema version the buckets record.
type Schema int

const (
	// SchemaCheck refuses buckets that a newer khadga opened, and raises
	// an older recorded version to this binary's: for a process that
	// rewrites records (a node, an admin command).
	SchemaCheck Schema = iota
	// SchemaIgnore neither refuses nor records a version: for a process
	// that only reads the TURN secrets, and makes the first one if there
	// is none (khadga turn --nats), which no version concerns. Checked,
	// a TURN node of an older release did not start once the signaling
	// nodes were upgraded, and one of a newer release raised the version,
	// after which the signaling nodes of the older release did not.
	SchemaIgnore
	// SchemaReplace opens buckets of any version, for a process that
	// replaces every record (khadga restore --nats: Clear, then a copy);
	// Clear records this binary's version. This is how a cluster goes
	// back to an older release, whose restore was refused.
	SchemaReplace
	// SchemaSame refuses buckets of any version but this binary's
	// (ErrOtherRelease), and records its own in buckets that have none:
	// for an admin command, which may run from another machine with
	// another release than the nodes. Raising an older version would
	// stop the nodes of that release from restarting; leaving it, they
	// would drop what this binary writes when they rewrite a record.
	SchemaSame
)

// ErrOtherRelease is Open's error, with SchemaSame, for buckets whose
// nodes run an older release than this binary: run the nodes' release,
// or upgrade the nodes first.
var ErrOtherRelease = errors.New("the cluster's nodes run an older khadga: use their release for this command, or upgrade them first")

// schemaKey is the health bucket's key that holds the highest record
// schema (store.SchemaVersion) of any khadga that has opened the buckets.
const schemaKey = "schema"

// checkSchema refuses buckets that a newer khadga has opened: their
// records may hold fields this binary does not know and would drop when it
// rewrites one (a second factor, say), so it fails with
// store.ErrSchemaTooNew, as a bbolt file of a newer schema does. Otherwise
// it raises the recorded version to this binary's. The version is read
// from the bucket's leader and raised by compare-and-swap, so that two
// nodes of different versions starting at once end with the higher one.
func (s *Store) checkSchema(ctx context.Context) error {
	mine := mySchema()
	for {
		data, rev, err := s.health.latest(ctx, schemaKey)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			if _, err = s.health.Create(ctx, schemaKey, mine); conflict(err) {
				continue // another node wrote it meanwhile
			}
			return err
		}
		if err != nil {
			return err
		}
		v, err := strconv.ParseUint(string(data), 10, 64)
		if err != nil {
			return fmt.Errorf("schema version %q in bucket %s: %w", data, s.health.Bucket(), store.ErrInvalid)
		}
		switch {
		case v > store.SchemaVersion:
			return fmt.Errorf("schema version %d (a newer khadga opened these buckets), this binary supports up to %d: %w",
				v, store.SchemaVersion, store.ErrSchemaTooNew)
		case v == store.SchemaVersion:
			return nil
		case s.opts.Schema == SchemaSame:
			return fmt.Errorf("schema version %d recorded, this binary writes %d: %w", v, store.SchemaVersion, ErrOtherRelease)
		}
		if _, err = s.health.Update(ctx, schemaKey, mine, rev); !conflict(err) {
			return err
		}
	}
}

// mySchema is store.SchemaVersion as the health bucket holds it.
func mySchema() []byte { return []byte(strconv.FormatUint(store.SchemaVersion, 10)) }
