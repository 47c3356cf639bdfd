package kvstore

import (
	"context"
	"fmt"
	"time"

	"github.com/khadga/khadga/signaling/store"
)

// SigningKeys returns every signing key, retired ones included, oldest
// first (by Created, then ID).
func (s *Store) SigningKeys() (keys []store.SigningKey, err error) {
	err = s.do("signing_keys", s.opts.OpTimeout, func(ctx context.Context) error {
		keys, err = list[store.SigningKey](ctx, s.keys)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	store.SortKeys(keys)
	return keys, nil
}

// AddSigningKey stores a new key; store.ErrKeyExists if the ID is taken.
func (s *Store) AddSigningKey(k store.SigningKey) error {
	k, err := k.Checked(time.Now())
	if err != nil {
		return err
	}
	return s.do("add_signing_key", s.opts.OpTimeout, func(ctx context.Context) error {
		return modify(ctx, s, "add_signing_key", s.keys, key(k.ID), true, func(v *store.SigningKey, exists bool) (bool, error) {
			if exists {
				return false, fmt.Errorf("add signing key %q: %w", k.ID, store.ErrKeyExists)
			}
			*v = k
			return true, nil
		})
	})
}

// RetireSigningKey marks the key retired; store.ErrNotFound if unknown.
func (s *Store) RetireSigningKey(id string) error {
	return s.UpdateSigningKey(id, func(k *store.SigningKey) error { k.Retired = true; return nil })
}

// UpdateSigningKey applies fn to the key in one step, retried on
// conflicts; fn may not change the key material (store.SigningKey.SameMaterial).
func (s *Store) UpdateSigningKey(id string, fn func(*store.SigningKey) error) error {
	err := s.do("update_signing_key", s.opts.OpTimeout, func(ctx context.Context) error {
		return modify(ctx, s, "update_signing_key", s.keys, key(id), false, func(k *store.SigningKey, _ bool) (bool, error) {
			was := *k
			if err := fn(k); err != nil {
				return false, err
			}
			if err := k.SameMaterial(was); err != nil {
				return false, err
			}
			return true, nil
		})
	})
	if err != nil {
		return fmt.Errorf("update signing key %q: %w", id, err)
	}
	return nil
}
