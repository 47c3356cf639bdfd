package kvstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/khadga/khadga/signaling/store"
)

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
	mine := []byte(strconv.FormatUint(store.SchemaVersion, 10))
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
		}
		if _, err = s.health.Update(ctx, schemaKey, mine, rev); !conflict(err) {
			return err
		}
	}
}
