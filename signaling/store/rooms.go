package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Errors of the room methods.
var (
	// ErrRoomOwned is returned by SetRoom and DeleteRoom when another user
	// owns the room.
	ErrRoomOwned = errors.New("store: room is owned by another user")
	// ErrTooManyRooms is returned by SetRoom when claiming one more room
	// would take its owner past the limit.
	ErrTooManyRooms = errors.New("store: the user owns as many rooms as allowed")
)

// Room is the settings of a claimed room. A room without settings is open
// to anyone up to the server's member limit; claiming one gives it an owner,
// who may lower that limit and require an invite.
type Room struct {
	Name  string `json:"name"`
	Owner string `json:"owner"`
	// MaxMembers caps the people in the room; 0 means the server's limit.
	MaxMembers int `json:"maxMembers,omitempty"`
	// InviteHash is the SHA-256 of the room's invite token (the token is
	// never stored); empty means no invite is needed.
	InviteHash []byte    `json:"inviteHash,omitempty"`
	Created    time.Time `json:"created"`
}

// InviteMatches reports whether invite is the room's current invite token.
func (r Room) InviteMatches(invite string) bool {
	sum := sha256.Sum256([]byte(invite))
	return len(r.InviteHash) == sha256.Size && bytes.Equal(sum[:], r.InviteHash)
}

// HashInvite is what Room.InviteHash holds for invite.
func HashInvite(invite string) []byte {
	sum := sha256.Sum256([]byte(invite))
	return sum[:]
}

// Validate checks a room's settings as SetRoom stores them, for every
// Backend: an error wrapping ErrInvalid.
func (r Room) Validate() error { return r.validate() }

func (r Room) validate() error {
	if err := validName("room", r.Name); err != nil {
		return err
	}
	if err := validName("owner", r.Owner); err != nil {
		return err
	}
	if r.MaxMembers < 0 {
		return fmt.Errorf("%w: room %q: negative member cap", ErrInvalid, r.Name)
	}
	if len(r.InviteHash) != 0 && len(r.InviteHash) != sha256.Size {
		return fmt.Errorf("%w: room %q: invite hash must be %d bytes", ErrInvalid, r.Name, sha256.Size)
	}
	return nil
}

// GetRoom returns the settings of a claimed room, or ErrNotFound.
func (s *Store) GetRoom(name string) (Room, error) {
	var r Room
	err := s.db.View(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(bucketRooms), []byte(name), &r)
	})
	if err != nil {
		return Room{}, fmt.Errorf("get room %q: %w", name, err)
	}
	return r, nil
}

// SetRoom claims the room for owner, or changes it if owner has it
// already, in one transaction: fn changes the settings (it must not change
// Name or Owner, and must not call the Store). Claiming fails with
// ErrTooManyRooms when owner already owns maxOwned rooms, with ErrNotFound
// when owner is no account (a bot token's user, or an account deleted
// meanwhile: DeleteUser releases rooms, and nothing may be left to a name
// that someone registers later), and with ErrRoomOwned when someone else
// owns the room. It returns the stored settings
// and whether the room was claimed now. fn may run more than once in a
// backend that retries (see Backend).
func (s *Store) SetRoom(name, owner string, maxOwned int, fn func(*Room) error) (Room, bool, error) {
	return s.setRoom(name, owner, maxOwned, true, fn)
}

// UpdateRoom is SetRoom for a room owner has claimed already: it never
// claims one (ErrNotFound).
func (s *Store) UpdateRoom(name, owner string, fn func(*Room) error) (Room, error) {
	r, _, err := s.setRoom(name, owner, 0, false, fn)
	return r, err
}

func (s *Store) setRoom(name, owner string, maxOwned int, claim bool, fn func(*Room) error) (Room, bool, error) {
	if err := errors.Join(validName("room", name), validName("owner", owner)); err != nil {
		return Room{}, false, err
	}
	var out Room
	var claimed bool
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRooms)
		var r Room
		switch err := getJSON(b, []byte(name), &r); {
		case errors.Is(err, ErrNotFound) && !claim:
			return err
		case errors.Is(err, ErrNotFound):
			if tx.Bucket(bucketUsers).Get([]byte(owner)) == nil {
				return fmt.Errorf("owner %q is no account: %w", owner, ErrNotFound)
			}
			if ownedRooms(tx, owner, maxOwned) >= maxOwned {
				return ErrTooManyRooms
			}
			r, claimed = Room{Name: name, Owner: owner, Created: time.Now().UTC()}, true
		case err != nil:
			return err
		case r.Owner != owner:
			return ErrRoomOwned
		}
		if err := fn(&r); err != nil {
			return err
		}
		if r.Name != name || r.Owner != owner {
			return fmt.Errorf("%w: name and owner cannot change", ErrInvalid)
		}
		if err := r.validate(); err != nil {
			return err
		}
		if err := tx.Bucket(bucketUserRoom).Put(userRoomKey(owner, name), nil); err != nil {
			return err
		}
		out = r
		return putJSON(b, []byte(name), r)
	})
	if err != nil {
		return Room{}, false, fmt.Errorf("set room %q: %w", name, err)
	}
	return out, claimed, nil
}

// DeleteRoom releases a room: it has no settings any more, and anyone may
// claim it. owner "" releases it whoever owns it (an admin); otherwise it
// must be the owner, or the answer is ErrRoomOwned. ErrNotFound if it is
// not claimed.
func (s *Store) DeleteRoom(name, owner string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRooms)
		var r Room
		if err := getJSON(b, []byte(name), &r); err != nil {
			return err
		}
		if owner != "" && r.Owner != owner {
			return ErrRoomOwned
		}
		if err := tx.Bucket(bucketUserRoom).Delete(userRoomKey(r.Owner, name)); err != nil {
			return err
		}
		return b.Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("delete room %q: %w", name, err)
	}
	return nil
}

// RoomsOwnedBy lists the rooms owner has claimed, by name.
func (s *Store) RoomsOwnedBy(owner string) ([]Room, error) {
	var rooms []Room
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRooms)
		return forOwnedRooms(tx, owner, func(name []byte) error {
			var r Room
			if err := getJSON(b, name, &r); err != nil {
				return fmt.Errorf("room %q: %w", name, err)
			}
			rooms = append(rooms, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("rooms of %q: %w", owner, err)
	}
	return rooms, nil
}

// ListRooms lists every claimed room, by name (for Copy).
func (s *Store) ListRooms() ([]Room, error) {
	var rooms []Room
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRooms).ForEach(func(k, v []byte) error {
			var r Room
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode room %q: %w", k, err)
			}
			rooms = append(rooms, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list rooms: %w", err)
	}
	return rooms, nil
}

// deleteUserRooms releases every room of a deleted user, so that a new
// account with the same name does not inherit them.
func deleteUserRooms(tx *bolt.Tx, owner string) error {
	var names [][]byte
	if err := forOwnedRooms(tx, owner, func(name []byte) error {
		names = append(names, bytes.Clone(name))
		return nil
	}); err != nil {
		return err
	}
	for _, name := range names {
		if err := tx.Bucket(bucketRooms).Delete(name); err != nil {
			return err
		}
		if err := tx.Bucket(bucketUserRoom).Delete(userRoomKey(owner, string(name))); err != nil {
			return err
		}
	}
	return nil
}

// ownedRooms counts owner's rooms, stopping at limit.
func ownedRooms(tx *bolt.Tx, owner string, limit int) int {
	n := 0
	if limit <= 0 {
		return 0
	}
	_ = forOwnedRooms(tx, owner, func([]byte) error {
		if n++; n >= limit {
			return errStop
		}
		return nil
	})
	return n
}

var errStop = errors.New("stop")

// forOwnedRooms calls fn with the name of each room of owner, in order,
// until fn returns an error (errStop ends it quietly).
func forOwnedRooms(tx *bolt.Tx, owner string, fn func(name []byte) error) error {
	prefix := userRoomKey(owner, "")
	c := tx.Bucket(bucketUserRoom).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if err := fn(k[len(prefix):]); err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

// userRoomKey is owner 0x00 room: validName keeps NUL out of both.
func userRoomKey(owner, room string) []byte {
	return append(append([]byte(owner), 0), room...)
}
