package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

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
