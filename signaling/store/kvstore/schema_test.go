package kvstore

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/store"
	"github.com/khadga/khadga/signaling/store/storetest"
)

// TestSchemaRecorded: the first node records its schema version; a later
// one of the same version opens the buckets; one that finds a newer
// version (a newer khadga opened them) refuses them with
// store.ErrSchemaTooNew, as it would a newer bbolt file, rather than drop
// the fields it does not know from every record it rewrites; an older
// recorded version is raised.
func TestSchemaRecorded(t *testing.T) {
	prefix := newPrefix()
	conn := connect(t, shared.ClientURL())
	s := openStore(t, conn, Options{Prefix: prefix})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	schema := func() uint64 {
		t.Helper()
		data, _, err := s.health.latest(ctx, schemaKey)
		if err != nil {
			t.Fatal(err)
		}
		v, err := strconv.ParseUint(string(data), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := schema(); v != store.SchemaVersion {
		t.Fatalf("recorded schema %d, want %d", v, store.SchemaVersion)
	}
	openStore(t, conn, Options{Prefix: prefix})

	if _, err := s.health.Put(ctx, schemaKey, []byte(strconv.FormatUint(store.SchemaVersion+1, 10))); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, conn, Options{Prefix: prefix, Logger: s.log})
	if !errors.Is(err, store.ErrSchemaTooNew) {
		t.Fatalf("Open of buckets a newer khadga opened: %v, want ErrSchemaTooNew", err)
	}
	if v := schema(); v != store.SchemaVersion+1 {
		t.Fatalf("the refused open changed the recorded schema to %d", v)
	}

	if _, err := s.health.Put(ctx, schemaKey, []byte("1")); err != nil {
		t.Fatal(err)
	}
	openStore(t, conn, Options{Prefix: prefix})
	if v := schema(); v != store.SchemaVersion {
		t.Fatalf("an older recorded schema became %d, want %d", v, store.SchemaVersion)
	}
}

// TestRecordFields: the cluster's own records, which wrap the store's,
// checked as the bbolt store's are (storetest.CheckRecordFields).
func TestRecordFields(t *testing.T) {
	storetest.CheckRecordFields(t, filepath.Join("testdata", "record-fields.txt"), store.SchemaVersion,
		account{}, roomEntry{}, secret{})
}
