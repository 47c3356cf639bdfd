package store_test

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/khadga/khadga/internal/testlog"
	"github.com/khadga/khadga/signaling/store"
	"github.com/khadga/khadga/signaling/store/storetest"
)

// TestConformance runs the store contract's suite against bbolt files in
// temporary directories.
func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Config{New: func(t *testing.T) storetest.Opener {
		path := filepath.Join(t.TempDir(), "khadga.db")
		return func(t *testing.T, lim storetest.Limits) store.Backend {
			s, err := store.Open(path, store.Options{AuditMax: lim.AuditMax, MaxFamiliesPerUser: lim.MaxFamiliesPerUser,
				Logger: testlog.New(t, slog.LevelDebug)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
	}})
}

// TestRecordFields: every record the stores keep, checked against
// testdata/record-fields.txt, so that no field is added without a schema
// version that older binaries refuse (storetest.CheckRecordFields).
func TestRecordFields(t *testing.T) {
	storetest.CheckRecordFields(t, filepath.Join("testdata", "record-fields.txt"), store.SchemaVersion,
		store.User{}, store.Family{}, store.SigningKey{}, store.BotToken{}, store.Room{}, store.AuditEvent{})
}
