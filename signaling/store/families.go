package store

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Family is one chain of rotating refresh tokens, started by one login.
// Only a hash of the current token's secret is kept. Presenting any other
// secret for the family means an old token was replayed (stolen), so the
// whole family is revoked.
type Family struct {
	ID         string `json:"id"`
	User       string `json:"user"`
	Current    []byte `json:"current"` // hash of the current secret
	Generation int    `json:"generation"`
	// Keyed families have an id derived from a key only their refresh
	// tokens hold (auth); the others, made before, have the key as id.
	Keyed   bool      `json:"keyed,omitempty"`
	Revoked bool      `json:"revoked,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"` // absolute end of the family; rotation does not extend it
}

// Checked validates a new family and fills a zero Created with now, as
// CreateFamily does in every Backend: f as it is stored, or an error
// wrapping ErrInvalid.
func (f Family) Checked(now time.Time) (Family, error) {
	if err := validName("family", f.ID); err != nil {
		return f, err
	}
	if err := validName("user", f.User); err != nil {
		return f, err
	}
	if len(f.Current) == 0 || f.Expires.IsZero() {
		return f, fmt.Errorf("%w: family needs Current and Expires", ErrInvalid)
	}
	if f.Created.IsZero() {
		f.Created = now.UTC()
	}
	return f, nil
}

// familyIndexKey is the user_family key: user NUL created-ns id. Sorting by
// creation time lets CreateFamily drop a user's oldest family cheaply.
func familyIndexKey(f Family) []byte {
	k := make([]byte, 0, len(f.User)+1+8+len(f.ID))
	k = append(k, f.User...)
	k = append(k, 0)
	k = append(k, be64(uint64(f.Created.UnixNano()))...)
	return append(k, f.ID...)
}

func userPrefix(user string) []byte { return append([]byte(user), 0) }

// CreateFamily stores a new family. ID, User, Current and Expires are
// required; a zero Created is set to now. The user must exist (ErrNotFound
// otherwise), so that a login racing the account's deletion leaves no
// family behind. If the user then holds more than
// Options.MaxFamiliesPerUser families, the oldest ones are deleted.
func (s *Store) CreateFamily(f Family) error {
	f, err := f.Checked(time.Now())
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketUsers).Get([]byte(f.User)) == nil {
			return fmt.Errorf("create family: user %q: %w", f.User, ErrNotFound)
		}
		b := tx.Bucket(bucketFamilies)
		if b.Get([]byte(f.ID)) != nil {
			return fmt.Errorf("create family: %w", ErrFamilyExists)
		}
		if err := putJSON(b, []byte(f.ID), f); err != nil {
			return err
		}
		if err := tx.Bucket(bucketUserFamily).Put(familyIndexKey(f), nil); err != nil {
			return err
		}
		return s.capUserFamilies(tx, f.User)
	})
}

// capUserFamilies deletes the user's oldest families beyond the cap, so one
// account logging in in a loop cannot grow the file without bound.
func (s *Store) capUserFamilies(tx *bolt.Tx, user string) error {
	keys := userFamilyKeys(tx, user)
	for len(keys) > s.opts.MaxFamiliesPerUser {
		if err := deleteFamilyByIndex(tx, keys[0], user); err != nil {
			return err
		}
		keys = keys[1:]
	}
	return nil
}

// userFamilyKeys returns the user's index keys, oldest first (copied, so the
// caller may delete while using them).
func userFamilyKeys(tx *bolt.Tx, user string) [][]byte {
	prefix := userPrefix(user)
	var keys [][]byte
	c := tx.Bucket(bucketUserFamily).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	return keys
}

// deleteFamilyByIndex removes an index entry and the family it points to.
func deleteFamilyByIndex(tx *bolt.Tx, indexKey []byte, user string) error {
	id := indexKey[len(user)+1+8:]
	if err := tx.Bucket(bucketFamilies).Delete(id); err != nil {
		return err
	}
	return tx.Bucket(bucketUserFamily).Delete(indexKey)
}

func deleteUserFamilies(tx *bolt.Tx, user string) (ids []string, err error) {
	for _, k := range userFamilyKeys(tx, user) {
		if err := deleteFamilyByIndex(tx, k, user); err != nil {
			return nil, err
		}
		ids = append(ids, string(k[len(user)+1+8:]))
	}
	return ids, nil
}

// GetFamily returns the family or ErrNotFound.
func (s *Store) GetFamily(id string) (Family, error) {
	var f Family
	err := s.db.View(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(bucketFamilies), []byte(id), &f)
	})
	if err != nil {
		return Family{}, fmt.Errorf("get family: %w", err)
	}
	return f, nil
}

// RotateFamily moves family id from its current secret to the next one, in
// one transaction:
//   - ErrNotFound if the family is unknown;
//   - ErrRevoked if it is revoked or now is at or past Expires;
//   - if presentedHash is not Current (constant-time compare) the family is
//     revoked, the revocation is committed, and ErrTokenReuse is returned
//     together with the family (so the caller can audit its User);
//   - otherwise Current becomes nextHash, Generation is incremented and the
//     updated family is returned.
func (s *Store) RotateFamily(id string, presentedHash, nextHash []byte, now time.Time) (Family, error) {
	if len(nextHash) == 0 {
		return Family{}, fmt.Errorf("rotate family: %w: empty next hash", ErrInvalid)
	}
	var f Family
	var reuse error
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFamilies)
		if err := getJSON(b, []byte(id), &f); err != nil {
			return err
		}
		err := f.Rotate(presentedHash, nextHash, now)
		if errors.Is(err, ErrTokenReuse) {
			reuse, err = err, nil // commit the revocation, report after
		}
		if err != nil {
			return err
		}
		return putJSON(b, []byte(id), f)
	})
	if err != nil {
		return Family{}, fmt.Errorf("rotate family: %w", err)
	}
	return f, reuse
}

// Rotate applies RotateFamily's rule to f, for every Backend: ErrRevoked
// if f is revoked or now is at or past Expires (f unchanged); if
// presentedHash is not Current (constant-time compare), f is revoked and
// the error wraps ErrTokenReuse (naming the user); otherwise Current
// becomes nextHash and Generation is incremented. Unless the error is
// ErrRevoked, f changed and must be written.
func (f *Family) Rotate(presentedHash, nextHash []byte, now time.Time) error {
	if f.Revoked || !now.Before(f.Expires) {
		return ErrRevoked
	}
	if subtle.ConstantTimeCompare(presentedHash, f.Current) != 1 {
		f.Revoked = true
		return fmt.Errorf("rotate family of user %q: %w", f.User, ErrTokenReuse)
	}
	f.Current = bytes.Clone(nextHash)
	f.Generation++
	return nil
}

// RevokeFamily marks the family revoked (logout). ErrNotFound if unknown.
// Revoked families stay until they expire so replays are still recognised.
func (s *Store) RevokeFamily(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFamilies)
		var f Family
		if err := getJSON(b, []byte(id), &f); err != nil {
			return fmt.Errorf("revoke family: %w", err)
		}
		f.Revoked = true
		return putJSON(b, []byte(id), f)
	})
}

// RevokeUserFamilies revokes every family of the user (password change,
// disabling an account, "log out everywhere"). No error if there are none.
func (s *Store) RevokeUserFamilies(user string) error {
	_, err := s.RevokeUserFamilyIDs(user)
	return err
}

// RevokeUserFamilyIDs is RevokeUserFamilies, returning the ids of the
// families it revoked, so that the caller can end the sessions they opened.
func (s *Store) RevokeUserFamilyIDs(user string) ([]string, error) {
	var ids []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFamilies)
		for _, k := range userFamilyKeys(tx, user) {
			id := k[len(user)+1+8:]
			var f Family
			if err := getJSON(b, id, &f); err != nil {
				return fmt.Errorf("revoke family of %q: %w", user, err)
			}
			if f.Revoked {
				continue
			}
			f.Revoked = true
			if err := putJSON(b, id, f); err != nil {
				return err
			}
			ids = append(ids, string(id))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// PurgeExpired deletes every family whose Expires is at or before now,
// revoked or not, and returns how many it deleted. The server calls it
// periodically.
func (s *Store) PurgeExpired(now time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		var dead []Family
		err := tx.Bucket(bucketFamilies).ForEach(func(k, v []byte) error {
			var f Family
			if err := json.Unmarshal(v, &f); err != nil {
				return fmt.Errorf("decode family %q: %w", k, err)
			}
			if !now.Before(f.Expires) {
				dead = append(dead, f)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, f := range dead {
			if err := deleteFamilyByIndex(tx, familyIndexKey(f), f.User); err != nil {
				return err
			}
		}
		n = len(dead)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("purge expired families: %w", err)
	}
	return n, nil
}

// ListFamilies returns every family, revoked and expired ones included, by
// user and then creation time (for backups and migrations).
func (s *Store) ListFamilies() ([]Family, error) {
	var out []Family
	err := s.db.View(func(tx *bolt.Tx) error {
		fams := tx.Bucket(bucketFamilies)
		return tx.Bucket(bucketUserFamily).ForEach(func(k, _ []byte) error {
			user, _, ok := bytes.Cut(k, []byte{0})
			if !ok || len(k) < len(user)+1+8 {
				return fmt.Errorf("corrupt family index key %q", k)
			}
			var f Family
			if err := getJSON(fams, k[len(user)+1+8:], &f); err != nil {
				return fmt.Errorf("family of %q: %w", user, err)
			}
			out = append(out, f)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list families: %w", err)
	}
	return out, nil
}
