package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestBotTokens(t *testing.T) {
	s := openTemp(t, Options{})
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rec := BotToken{ID: "t1", Kind: BotRefresh, User: "rec", Role: "recorder", Rooms: []string{"lab"},
		Secret: []byte("hash"), Created: now, Expires: now.Add(time.Hour)}
	if err := s.CreateBotToken(rec); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]BotToken{
		"id taken":           rec,
		"no kind":            {ID: "t2", User: "rec", Expires: now},
		"refresh, no secret": {ID: "t2", Kind: BotRefresh, User: "rec", Expires: now},
		"access with secret": {ID: "t2", Kind: BotAccess, User: "rec", Expires: now, Secret: []byte("x")},
		"no expiry":          {ID: "t2", Kind: BotAccess, User: "rec"},
		"no user":            {ID: "t2", Kind: BotAccess, Expires: now},
		"NUL in the id":      {ID: "t\x002", Kind: BotAccess, User: "rec", Expires: now},
	} {
		if err := s.CreateBotToken(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: CreateBotToken err = %v, want ErrInvalid", name, err)
		}
	}
	if err := s.CreateBotToken(BotToken{ID: "t0", Kind: BotAccess, User: "cam", Created: now.Add(-time.Hour), Expires: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListBotTokens()
	if err != nil || len(list) != 2 || list[0].ID != "t0" || list[1].ID != "t1" || list[1].Secret != nil || list[1].Rooms[0] != "lab" {
		t.Fatalf("ListBotTokens = %+v, %v (want cam's then rec's, no secret)", list, err)
	}
	got, err := s.UpdateBotToken("t1", func(b *BotToken) error { b.Revoked = now; return nil })
	if err != nil || !got.Revoked.Equal(now) {
		t.Fatalf("revoke: %+v %v", got, err)
	}
	if _, err := s.UpdateBotToken("t1", func(b *BotToken) error { b.User = "eve"; return nil }); !errors.Is(err, ErrInvalid) {
		t.Errorf("changing the user: %v, want ErrInvalid", err)
	}
	if got, _ := s.GetBotToken("t1"); got.User != "rec" || string(got.Secret) != "hash" {
		t.Errorf("a refused update was written: %+v", got)
	}
	if _, err := s.UpdateBotToken("nope", func(*BotToken) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("update unknown: %v", err)
	}
	n, err := s.PurgeExpiredBotTokens(now.Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("purge = %d, %v; want the one expired", n, err)
	}
	if _, err := s.GetBotToken("t0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired token still there: %v", err)
	}
	if _, err := s.GetBotToken("t1"); err != nil {
		t.Errorf("live (revoked) token purged: %v", err)
	}
}

func TestBotTokensCapped(t *testing.T) {
	s := openTemp(t, Options{})
	exp := time.Now().Add(time.Hour)
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBotTokens)
		for i := range MaxBotTokens {
			if err := b.Put(be64(uint64(i)), []byte("{}")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateBotToken(BotToken{ID: "one-too-many", Kind: BotAccess, User: "rec", Expires: exp}); !errors.Is(err, ErrTooManyBotTokens) {
		t.Fatalf("CreateBotToken past the cap: %v", err)
	}
}

// TestMigrateV1 opens a schema 1 file: it gains the bot token bucket, and
// its live signing keys are marked as having signed bot tokens that may
// live LegacyBotTokenTTL, so that rotating them keeps them verifying.
func TestMigrateV1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := createV1(tx); err != nil {
			return err
		}
		b := tx.Bucket(bucketKeys)
		for _, k := range []SigningKey{{ID: "live", Alg: "EdDSA", Private: []byte("k")}, {ID: "old", Alg: "EdDSA", Private: []byte("k"), Retired: true}} {
			if err := putJSON(b, []byte(k.ID), k); err != nil {
				return err
			}
		}
		return writeVersion(tx, 1)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if info, err := Check(path); err != nil || info.Version != 1 {
		t.Fatalf("Check of a schema 1 file: %+v %v", info, err)
	}
	before := time.Now()
	s, err := Open(path, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keys, err := s.SigningKeys()
	if err != nil || len(keys) != 2 {
		t.Fatal(keys, err)
	}
	for _, k := range keys {
		switch {
		case k.ID == "live" && k.TokensUntil.Before(before.Add(LegacyBotTokenTTL)):
			t.Errorf("live key: TokensUntil %v, want at least %v", k.TokensUntil, before.Add(LegacyBotTokenTTL))
		case k.ID == "old" && !k.TokensUntil.IsZero():
			t.Errorf("retired key marked: %v", k.TokensUntil)
		}
	}
	if _, err := s.ListBotTokens(); err != nil {
		t.Fatal(err)
	}
}
