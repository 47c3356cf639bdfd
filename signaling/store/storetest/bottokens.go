package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/store"
)

func testBotTokens(t *testing.T, c Config) {
	s, _ := open(t, c, Limits{})
	rec := store.BotToken{ID: "t1", Kind: store.BotRefresh, User: "rec", Role: "recorder", Rooms: []string{"lab"},
		Secret: []byte("hash"), Created: t0, Expires: t0.Add(time.Hour)}
	if err := s.CreateBotToken(rec); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]store.BotToken{
		"id taken":           rec,
		"no kind":            {ID: "t2", User: "rec", Expires: t0},
		"refresh, no secret": {ID: "t2", Kind: store.BotRefresh, User: "rec", Expires: t0},
		"access with secret": {ID: "t2", Kind: store.BotAccess, User: "rec", Expires: t0, Secret: []byte("x")},
		"no expiry":          {ID: "t2", Kind: store.BotAccess, User: "rec"},
		"no user":            {ID: "t2", Kind: store.BotAccess, Expires: t0},
		"NUL in the id":      {ID: "t\x002", Kind: store.BotAccess, User: "rec", Expires: t0},
	} {
		if err := s.CreateBotToken(bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: CreateBotToken err = %v, want ErrInvalid", name, err)
		}
	}
	if err := s.CreateBotToken(store.BotToken{ID: "t0", Kind: store.BotAccess, User: "cam", Created: t0.Add(-time.Hour), Expires: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListBotTokens()
	if err != nil || len(list) != 2 || list[0].ID != "t0" || list[1].ID != "t1" || string(list[1].Secret) != "hash" || list[1].Rooms[0] != "lab" {
		t.Fatalf("ListBotTokens = %+v, %v (want cam's then rec's)", list, err)
	}
	got, err := s.UpdateBotToken("t1", func(b *store.BotToken) error { b.Revoked = t0; return nil })
	if err != nil || !got.Revoked.Equal(t0) {
		t.Fatalf("revoke: %+v %v", got, err)
	}
	boom := errors.New("boom")
	if _, err := s.UpdateBotToken("t1", func(b *store.BotToken) error { b.LastUsed = t0; return boom }); !errors.Is(err, boom) {
		t.Errorf("fn's error: %v, want boom", err)
	}
	if _, err := s.UpdateBotToken("t1", func(b *store.BotToken) error { b.User = "eve"; return nil }); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("changing the user: %v, want ErrInvalid", err)
	}
	if got, _ := s.GetBotToken("t1"); got.User != "rec" || string(got.Secret) != "hash" || !got.LastUsed.IsZero() || !got.Revoked.Equal(t0) {
		t.Errorf("a refused update was written: %+v", got)
	}
	if _, err := s.UpdateBotToken("nope", func(*store.BotToken) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update unknown: %v", err)
	}
	if _, err := s.GetBotToken("nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get unknown: %v", err)
	}
	n, err := s.PurgeExpiredBotTokens(t0.Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("purge = %d, %v; want the one expired", n, err)
	}
	if _, err := s.GetBotToken("t0"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired token still there: %v", err)
	}
	if _, err := s.GetBotToken("t1"); err != nil {
		t.Errorf("live (revoked) token purged: %v", err)
	}
}

func testUpdateSigningKey(t *testing.T, c Config) {
	s, _ := open(t, c, Limits{})
	if err := s.AddSigningKey(store.SigningKey{ID: "k1", Alg: "EdDSA", Private: []byte("p1"), Created: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateSigningKey("k1", func(k *store.SigningKey) error {
		k.TokensUntil, k.RetireAt = t0.Add(time.Hour), t0.Add(2*time.Hour)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateSigningKey("k1", func(k *store.SigningKey) error { k.Private = []byte("other"); return nil }); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("changing the key material: %v, want ErrInvalid", err)
	}
	if err := s.UpdateSigningKey("nope", func(*store.SigningKey) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update unknown: %v", err)
	}
	keys, err := s.SigningKeys()
	if err != nil || len(keys) != 1 || !keys[0].TokensUntil.Equal(t0.Add(time.Hour)) || !keys[0].RetireAt.Equal(t0.Add(2*time.Hour)) ||
		string(keys[0].Private) != "p1" {
		t.Fatalf("after update: %+v %v", keys, err)
	}
}
