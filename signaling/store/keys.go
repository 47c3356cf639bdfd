package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// MaxSecretLen bounds what a Secret generator may return.
const MaxSecretLen = 4096

// SigningKey is a JWT signing key. Private holds the key material in the
// format the auth package chooses for Alg (for EdDSA, the Ed25519 seed).
// Retired keys are kept for the record but no longer sign or verify.
type SigningKey struct {
	ID      string    `json:"id"`
	Alg     string    `json:"alg"`
	Private []byte    `json:"private"`
	Created time.Time `json:"created"`
	Retired bool      `json:"retired,omitempty"`
	// TokensUntil is the latest expiry of a long-lived token (a bot access
	// token) signed with the key; short session tokens are not counted.
	TokensUntil time.Time `json:"tokensUntil,omitzero"`
	// RetireAt, set when a newer key took over signing, is when the key
	// stops verifying: once every token it signed has expired.
	RetireAt time.Time `json:"retireAt,omitzero"`
}

// Checked validates a new key and fills a zero Created with now, as
// AddSigningKey does in every Backend.
func (k SigningKey) Checked(now time.Time) (SigningKey, error) {
	if err := validName("signing key", k.ID); err != nil {
		return k, err
	}
	if k.Alg == "" || len(k.Private) == 0 {
		return k, fmt.Errorf("%w: signing key needs Alg and Private", ErrInvalid)
	}
	if k.Created.IsZero() {
		k.Created = now.UTC()
	}
	return k, nil
}

// SameMaterial is UpdateSigningKey's rule, for every Backend: fn may not
// change the key's ID, Alg or Private (ErrInvalid).
func (k SigningKey) SameMaterial(was SigningKey) error {
	if k.ID != was.ID || k.Alg != was.Alg || !bytes.Equal(k.Private, was.Private) {
		return fmt.Errorf("%w: id and key material cannot change", ErrInvalid)
	}
	return nil
}

// SortKeys sorts keys oldest first (by Created, then ID), as
// SigningKeys returns them.
func SortKeys(keys []SigningKey) {
	slices.SortFunc(keys, func(a, b SigningKey) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return bytes.Compare([]byte(a.ID), []byte(b.ID))
	})
}

// SigningKeys returns every signing key, retired ones included, oldest
// first (by Created, then ID).
func (s *Store) SigningKeys() ([]SigningKey, error) {
	var keys []SigningKey
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketKeys).ForEach(func(k, v []byte) error {
			var key SigningKey
			if err := json.Unmarshal(v, &key); err != nil {
				return fmt.Errorf("decode signing key %q: %w", k, err)
			}
			keys = append(keys, key)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	SortKeys(keys)
	return keys, nil
}

// AddSigningKey stores a new key. ErrKeyExists if the ID is taken. A zero
// Created is set to now.
func (s *Store) AddSigningKey(k SigningKey) error {
	k, err := k.Checked(time.Now())
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		if b.Get([]byte(k.ID)) != nil {
			return fmt.Errorf("add signing key %q: %w", k.ID, ErrKeyExists)
		}
		return putJSON(b, []byte(k.ID), k)
	})
}

// RetireSigningKey marks the key retired. ErrNotFound if unknown.
func (s *Store) RetireSigningKey(id string) error {
	return s.UpdateSigningKey(id, func(k *SigningKey) error { k.Retired = true; return nil })
}

// UpdateSigningKey atomically reads the key, applies fn and writes the
// result; nothing is written if fn fails. fn must not change ID or the key
// material. ErrNotFound if unknown.
func (s *Store) UpdateSigningKey(id string, fn func(*SigningKey) error) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		var k SigningKey
		if err := getJSON(b, []byte(id), &k); err != nil {
			return fmt.Errorf("update signing key %q: %w", id, err)
		}
		was := k
		if err := fn(&k); err != nil {
			return fmt.Errorf("update signing key %q: %w", id, err)
		}
		if err := k.SameMaterial(was); err != nil {
			return fmt.Errorf("update signing key %q: %w", id, err)
		}
		return putJSON(b, []byte(id), k)
	})
}

// Secret returns the named secret, calling generate and storing its result
// in the same transaction if it does not exist yet, so concurrent callers
// (and restarts) always agree on one value. generate must be quick and
// return 1..MaxSecretLen bytes.
func (s *Store) Secret(name string, generate func() ([]byte, error)) ([]byte, error) {
	if err := validName("secret", name); err != nil {
		return nil, err
	}
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		out = bytes.Clone(tx.Bucket(bucketSecrets).Get([]byte(name)))
		return nil
	})
	if err != nil || out != nil {
		return out, wrapSecretErr(name, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSecrets)
		if v := b.Get([]byte(name)); v != nil { // created since the View
			out = bytes.Clone(v)
			return nil
		}
		v, err := generate()
		if err != nil {
			return fmt.Errorf("generate: %w", err)
		}
		if err := CheckSecret(v); err != nil {
			return err
		}
		out = bytes.Clone(v)
		return b.Put([]byte(name), out)
	})
	return out, wrapSecretErr(name, err)
}

func wrapSecretErr(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("secret %q: %w", name, err)
}

// UpdateSecret atomically replaces the named secret with fn(old), where
// old is nil if there is none yet, and returns the new value. fn returns
// 1..MaxSecretLen bytes; if it fails nothing is written. fn must be quick,
// must not call the store, and may run more than once (see Backend).
func (s *Store) UpdateSecret(name string, fn func(old []byte) ([]byte, error)) ([]byte, error) {
	if err := validName("secret", name); err != nil {
		return nil, err
	}
	var out []byte
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSecrets)
		v, err := fn(bytes.Clone(b.Get([]byte(name))))
		if err != nil {
			return err
		}
		if err := CheckSecret(v); err != nil {
			return err
		}
		out = bytes.Clone(v)
		return b.Put([]byte(name), out)
	})
	if err != nil {
		return nil, fmt.Errorf("update secret %q: %w", name, err)
	}
	return out, nil
}

// Secrets returns every named secret (for backups and migrations).
func (s *Store) Secrets() (map[string][]byte, error) {
	out := make(map[string][]byte)
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSecrets).ForEach(func(k, v []byte) error {
			out[string(k)] = bytes.Clone(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	return out, nil
}

// CheckSecret returns an error wrapping ErrInvalid unless v has
// 1..MaxSecretLen bytes, as every Backend requires of a secret.
func CheckSecret(v []byte) error {
	if len(v) == 0 || len(v) > MaxSecretLen {
		return fmt.Errorf("%w: secret has %d bytes, want 1..%d", ErrInvalid, len(v), MaxSecretLen)
	}
	return nil
}

// WatchSigningKeys calls fn once and waits for ctx: one process holds a
// bbolt store, so no other node changes its keys (see Backend).
func (s *Store) WatchSigningKeys(ctx context.Context, fn func()) {
	fn()
	<-ctx.Done()
}

// WatchSecret calls fn with the secret's value, if it exists, and waits
// for ctx (see Backend).
func (s *Store) WatchSecret(ctx context.Context, name string, fn func([]byte)) {
	var v []byte
	_ = s.db.View(func(tx *bolt.Tx) error {
		v = bytes.Clone(tx.Bucket(bucketSecrets).Get([]byte(name)))
		return nil
	})
	if v != nil {
		fn(v)
	}
	<-ctx.Done()
}
