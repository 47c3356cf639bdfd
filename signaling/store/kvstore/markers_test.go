package kvstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/store"
)

// TestPurgedFamiliesLeaveNoMarkers: the index entries of families that
// were purged (expired here; a sign-out's eviction and an account's
// deletion take the same path, dropIndex) leave nothing in the families
// bucket's stream once their markers expire. Each purge's marker stayed
// for good before, one per sign-in ever made (family ids are never
// reused), so the stream, and NATS's memory and disk, grew for as long
// as the cluster ran.
func TestPurgedFamiliesLeaveNoMarkers(t *testing.T) {
	ttl := indexMarkerTTL
	t.Cleanup(func() { indexMarkerTTL = ttl })
	indexMarkerTTL = 2 * time.Second
	s := openStore(t, connect(t, shared.ClientURL()), Options{Prefix: newPrefix()})
	if err := s.CreateUser(store.User{Name: "ann"}); err != nil {
		t.Fatal(err)
	}
	before := streamMsgs(t, s)
	const n = 20
	now := time.Now()
	for i := range n {
		f := store.Family{ID: fmt.Sprintf("f%d", i), User: "ann", Current: []byte("h"), Created: now, Expires: now.Add(time.Minute)}
		if err := s.CreateFamily(f); err != nil {
			t.Fatal(err)
		}
	}
	if got := streamMsgs(t, s); got != before+n {
		t.Fatalf("%d index entries after %d sign-ins, want %d", got, n, before+n)
	}
	if purged, err := s.PurgeExpired(now.Add(2 * time.Minute)); err != nil || purged != n {
		t.Fatalf("PurgeExpired: %d, %v; want %d", purged, err, n)
	}
	deadline := time.Now().Add(30 * time.Second)
	for streamMsgs(t, s) > before {
		if time.Now().After(deadline) {
			t.Fatalf("the families stream holds %d messages, %d before the sign-ins: the purges' markers stay", streamMsgs(t, s), before)
		}
		time.Sleep(100 * time.Millisecond) // polling a count, not synchronising
	}
}

// streamMsgs counts the messages in the stream of s's families bucket.
func streamMsgs(t *testing.T, s *Store) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.conn.JetStream().Stream(ctx, "KV_"+s.families.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}
