package kvstore

import (
	"context"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/store"
)

// TestListSeesRecordsChangedMeanwhile: a listing holds every record that
// exists throughout it, also one that another node rewrites while the
// listing runs.
func TestListSeesRecordsChangedMeanwhile(t *testing.T) {
	s := openStore(t, connect(t, shared.ClientURL()), Options{Prefix: newPrefix()})
	w := openStore(t, connect(t, shared.ClientURL()), Options{Prefix: s.opts.Prefix})
	for _, id := range []string{"k1", "k2", "k3"} {
		if err := s.AddSigningKey(store.SigningKey{ID: id, Alg: "EdDSA", Private: make([]byte, 32), Created: t0}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	writer := make(chan error, 1)
	go func() {
		var err error
		for at := t0; ctx.Err() == nil && err == nil; at = at.Add(time.Second) {
			err = w.UpdateSigningKey("k2", func(k *store.SigningKey) error { k.RetireAt = at; return nil })
		}
		writer <- err
	}()
	defer func() {
		cancel()
		if err := <-writer; err != nil {
			t.Errorf("writer: %v", err)
		}
	}()
	for i := range 100 {
		keys, err := s.SigningKeys()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 3 {
			var ids []string
			for _, k := range keys {
				ids = append(ids, k.ID)
			}
			t.Fatalf("listing %d: keys %v, want k1, k2 and k3", i, ids)
		}
	}
}
