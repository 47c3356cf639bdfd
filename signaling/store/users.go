package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// MaxNameLen bounds user, secret and key names in bytes. Callers apply
// their own, usually stricter, username policy before reaching the store.
const MaxNameLen = 256

// User is an account. Names are compared byte for byte: callers normalise
// them (case, Unicode) before calling the store. A new field needs a new
// schema version (a migration step that changes nothing will do), so that
// an older binary, which would rewrite the record without it, refuses the
// data instead: TestRecordFields checks it.
type User struct {
	Name         string    `json:"name"`
	PasswordHash string    `json:"passwordHash,omitempty"` // PHC string from auth.HashPassword
	Role         string    `json:"role"`                   // proto.RoleUser, proto.RoleAdmin, ...
	Rooms        []string  `json:"rooms,omitempty"`        // room grants for access tokens; empty means any room
	Disabled     bool      `json:"disabled,omitempty"`
	Created      time.Time `json:"created"`
	// TOTP is the second factor, pending until confirmed with a first code.
	TOTP *TOTP `json:"totp,omitempty"`
	// Email, when the server checks addresses, must be verified before login.
	Email         string    `json:"email,omitempty"`
	EmailVerified bool      `json:"emailVerified,omitempty"`
	EmailToken    []byte    `json:"emailToken,omitempty"` // SHA-256 of the single-use link token
	EmailExpires  time.Time `json:"emailExpires,omitzero"`
	// Resets are the password-reset links emailed lately, newest last.
	Resets []ResetLink `json:"resets,omitempty"`
	// Bot marks a name held for bot tokens (`khadga token`): it has no
	// password and never signs in. Holding it keeps anyone from
	// registering a bot's name and passing for it, or using up the
	// connections it may open.
	Bot bool `json:"bot,omitempty"`
}

// ResetLink is one emailed password-reset link: the SHA-256 of its token,
// bound to the PasswordHash it would replace (so every link dies with any
// password change), and when it was sent.
type ResetLink struct {
	Token []byte    `json:"token"`
	Sent  time.Time `json:"sent"`
}

// TOTP is a user's RFC 6238 second factor.
type TOTP struct {
	Secret  string `json:"secret"` // base32
	Enabled bool   `json:"enabled"`
	// LastStep is the time step of the last accepted code: a code is
	// accepted once, so a replay within its window is refused.
	LastStep int64 `json:"lastStep,omitempty"`
	// Recovery holds SHA-256 hashes of the unused one-time recovery codes.
	Recovery [][]byte `json:"recovery,omitempty"`
}

// Checked validates a new user and fills a zero Created with now, as
// CreateUser does in every Backend.
func (u User) Checked(now time.Time) (User, error) {
	if err := validName("user", u.Name); err != nil {
		return u, err
	}
	if u.Created.IsZero() {
		u.Created = now.UTC()
	}
	return u, nil
}

// ValidName returns an error wrapping ErrInvalid unless name is a valid
// user, family, key or secret name (kind says which, for the message):
// 1..MaxNameLen bytes without NUL. Every Backend applies it.
func ValidName(kind, name string) error { return validName(kind, name) }

// validName rejects names that would break the key layout or be absurd.
// NUL is the separator in the user_family index.
func validName(kind, name string) error {
	if name == "" || len(name) > MaxNameLen || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("%w: %s name must be 1..%d bytes without NUL", ErrInvalid, kind, MaxNameLen)
	}
	return nil
}

// CreateUser stores a new user. It returns ErrUserExists if the name is
// taken. A zero Created is set to the current time.
func (s *Store) CreateUser(u User) error {
	u, err := u.Checked(time.Now())
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		if b.Get([]byte(u.Name)) != nil {
			return fmt.Errorf("create user %q: %w", u.Name, ErrUserExists)
		}
		return putJSON(b, []byte(u.Name), u)
	})
}

// GetUser returns the named user or ErrNotFound.
func (s *Store) GetUser(name string) (User, error) {
	var u User
	err := s.db.View(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(bucketUsers), []byte(name), &u)
	})
	if err != nil {
		return User{}, fmt.Errorf("get user %q: %w", name, err)
	}
	return u, nil
}

// UpdateUser atomically reads the named user, applies fn and writes the
// result. If fn returns an error nothing is written and that error is
// returned (wrapped). fn must not change Name. ErrNotFound if the user does
// not exist. fn runs inside the write transaction, so it must be quick and
// must not call the Store.
func (s *Store) UpdateUser(name string, fn func(*User) error) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		var u User
		if err := getJSON(b, []byte(name), &u); err != nil {
			return fmt.Errorf("update user %q: %w", name, err)
		}
		if err := fn(&u); err != nil {
			return fmt.Errorf("update user %q: %w", name, err)
		}
		if u.Name != name {
			return fmt.Errorf("update user %q: %w: name cannot change", name, ErrInvalid)
		}
		return putJSON(b, []byte(name), u)
	})
}

// DeleteUser removes the user and all their refresh-token families, so
// outstanding refresh tokens stop working at once, and releases their
// rooms, in one step. It returns the ids of the families it removed, so
// that the caller can end the sessions they opened. ErrNotFound if
// absent.
func (s *Store) DeleteUser(name string) (logins []string, err error) {
	return s.DeleteUserIf(name, nil)
}

// DeleteUserIf is DeleteUser when check, given the record in the same
// transaction, returns nil (a nil check always passes). check's error
// deletes nothing and is returned wrapped.
func (s *Store) DeleteUserIf(name string, check func(User) error) (logins []string, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		var u User
		if err := getJSON(b, []byte(name), &u); err != nil {
			return fmt.Errorf("delete user %q: %w", name, err)
		}
		if check != nil {
			if err := check(u); err != nil {
				return fmt.Errorf("delete user %q: %w", name, err)
			}
		}
		if err := b.Delete([]byte(name)); err != nil {
			return err
		}
		if err := deleteUserRooms(tx, name); err != nil {
			return err
		}
		logins, err = deleteUserFamilies(tx, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	return logins, nil
}

// ListUsers returns every user sorted by name.
func (s *Store) ListUsers() ([]User, error) {
	var users []User
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
			var u User
			if err := json.Unmarshal(v, &u); err != nil {
				return fmt.Errorf("decode user %q: %w", k, err)
			}
			users = append(users, u)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return users, nil
}

// putJSON encodes v and stores it under key.
func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return b.Put(key, data)
}

// getJSON decodes the value under key into v, or returns ErrNotFound.
// json.Unmarshal copies, so v stays valid after the transaction.
func getJSON(b *bolt.Bucket, key []byte, v any) error {
	data := b.Get(key)
	if data == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	return nil
}
