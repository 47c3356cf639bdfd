package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// MaxBotTokens bounds the bot tokens the store holds, revoked ones
// included until they expire.
const MaxBotTokens = 10_000

// Kinds of bot token.
const (
	// BotAccess is a signed access token handed to the bot as is; it
	// lives until it expires or is revoked.
	BotAccess = "access"
	// BotRefresh is a long-lived secret the bot trades for short access
	// tokens (/api/refresh); only its hash is kept.
	BotRefresh = "refresh"
)

// ErrTooManyBotTokens is returned by CreateBotToken when the store holds
// MaxBotTokens already.
var ErrTooManyBotTokens = errors.New("store: too many bot tokens; revoke or let expire some")

// BotToken records a token minted by `khadga token`, so that it can be
// listed and revoked. The access tokens a bot holds carry its ID.
type BotToken struct {
	ID    string   `json:"id"`
	Kind  string   `json:"kind"` // BotAccess or BotRefresh
	User  string   `json:"user"`
	Role  string   `json:"role"`
	Rooms []string `json:"rooms,omitempty"`
	// Secret is the SHA-256 of a refresh token's secret.
	Secret  []byte    `json:"secret,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	Revoked time.Time `json:"revoked,omitzero"`
	// LastUsed is the last time a refresh token was traded.
	LastUsed time.Time `json:"lastUsed,omitzero"`
}

// Checked validates a new bot token and fills a zero Created with now, as
// CreateBotToken does in every Backend.
func (t BotToken) Checked(now time.Time) (BotToken, error) {
	if err := validName("bot token", t.ID); err != nil {
		return t, err
	}
	if err := validName("user", t.User); err != nil {
		return t, err
	}
	if (t.Kind != BotAccess && t.Kind != BotRefresh) || t.Expires.IsZero() || (t.Kind == BotRefresh) != (len(t.Secret) > 0) {
		return t, fmt.Errorf("%w: bot token needs a kind, an expiry, and a secret hash exactly when it is a refresh token", ErrInvalid)
	}
	if t.Created.IsZero() {
		t.Created = now.UTC()
	}
	return t, nil
}

// SameIdentity is UpdateBotToken's rule, for every Backend: fn may not
// change the token's ID, Kind, User or Secret (ErrInvalid).
func (t BotToken) SameIdentity(was BotToken) error {
	if t.ID != was.ID || t.Kind != was.Kind || t.User != was.User || string(t.Secret) != string(was.Secret) {
		return fmt.Errorf("%w: id, kind, user and secret cannot change", ErrInvalid)
	}
	return nil
}

// SortBotTokens sorts tokens by user, then creation time, as
// ListBotTokens returns them.
func SortBotTokens(ts []BotToken) {
	slices.SortFunc(ts, func(a, b BotToken) int {
		if c := strings.Compare(a.User, b.User); c != 0 {
			return c
		}
		return a.Created.Compare(b.Created)
	})
}

// CreateBotToken stores a new bot token. ID, Kind, User and Expires are
// required; a zero Created is set to now.
func (s *Store) CreateBotToken(t BotToken) error {
	t, err := t.Checked(time.Now())
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBotTokens)
		if b.Stats().KeyN >= MaxBotTokens {
			return ErrTooManyBotTokens
		}
		if b.Get([]byte(t.ID)) != nil {
			return fmt.Errorf("create bot token: %w: id taken", ErrInvalid)
		}
		return putJSON(b, []byte(t.ID), t)
	})
}

// GetBotToken returns the bot token or ErrNotFound.
func (s *Store) GetBotToken(id string) (BotToken, error) {
	var t BotToken
	err := s.db.View(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(bucketBotTokens), []byte(id), &t)
	})
	if err != nil {
		return BotToken{}, fmt.Errorf("get bot token: %w", err)
	}
	return t, nil
}

// ListBotTokens returns every bot token, by user, then creation time,
// with the secret hashes (Copy carries them).
func (s *Store) ListBotTokens() ([]BotToken, error) {
	var out []BotToken
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBotTokens).ForEach(func(k, v []byte) error {
			var t BotToken
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("decode bot token %q: %w", k, err)
			}
			out = append(out, t)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list bot tokens: %w", err)
	}
	SortBotTokens(out)
	return out, nil
}

// UpdateBotToken atomically reads the token, applies fn and writes the
// result; nothing is written if fn fails (fn's error is returned wrapped). fn must not change ID, Kind,
// User or Secret. It returns the token as written. ErrNotFound if unknown.
func (s *Store) UpdateBotToken(id string, fn func(*BotToken) error) (BotToken, error) {
	var t BotToken
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBotTokens)
		if err := getJSON(b, []byte(id), &t); err != nil {
			return err
		}
		was := t
		if err := fn(&t); err != nil {
			return err
		}
		if err := t.SameIdentity(was); err != nil {
			return err
		}
		return putJSON(b, []byte(id), t)
	})
	if err != nil {
		return BotToken{}, fmt.Errorf("update bot token: %w", err)
	}
	return t, nil
}

// PurgeExpiredBotTokens deletes every bot token whose Expires is at or
// before now, revoked or not (an expired token is refused either way), and
// returns how many it deleted.
func (s *Store) PurgeExpiredBotTokens(now time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBotTokens)
		var dead [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var t BotToken
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("decode bot token %q: %w", k, err)
			}
			if !now.Before(t.Expires) {
				dead = append(dead, []byte(t.ID))
			}
			return nil
		})
		for _, k := range dead { // not inside ForEach, which must not write
			if err == nil {
				err = b.Delete(k)
			}
		}
		n = len(dead)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purge expired bot tokens: %w", err)
	}
	return n, nil
}
