package kvstore

// Rooms. A claimed room's settings live in its owner's account record, so
// that the limit on rooms per owner is checked in the same compare-and-swap
// that claims one, and deleting the account releases its rooms in the
// same step. The rooms bucket maps a room's name to its owner, and is what
// makes a name claimed once: an entry counts only while the owner's record
// holds the room. Entries of released rooms and deleted accounts are
// stale, and the next claim takes them over. A claim writes the owner's
// record first and then seals the claim with a compare-and-swap of the
// entry (create it, or update it at the revision read, even when it names
// the claimant already), so of two claims of one room, including one that
// takes over a stale entry, exactly one seals; the other undoes its
// record and finds the room owned.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/khadga/khadga/signaling/store"
	"github.com/nats-io/nats.go/jetstream"
)

// roomEntry is a record of the rooms bucket.
type roomEntry struct {
	Name  string `json:"name"`
	Owner string `json:"owner"`
}

// room returns the index of room name in the record, or -1.
func (a *account) room(name string) int {
	return slices.IndexFunc(a.Rooms, func(r store.Room) bool { return r.Name == name })
}

// putRoom stores r in the record, keeping the rooms sorted by name.
func (a *account) putRoom(r store.Room) {
	if i := a.room(r.Name); i >= 0 {
		a.Rooms[i] = r
		return
	}
	a.Rooms = append(a.Rooms, r)
	slices.SortFunc(a.Rooms, func(x, y store.Room) int { return cmp.Compare(x.Name, y.Name) })
}

// entry reads the owner a room's entry names, with its revision; "" and 0
// when there is none.
func (s *Store) entry(ctx context.Context, name string) (string, uint64, error) {
	var e roomEntry
	rev, err := get(ctx, s.rooms, key(name), &e)
	if errors.Is(err, store.ErrNotFound) {
		return "", 0, nil
	}
	return e.Owner, rev, err
}

// holds reads whether owner's record holds room name (and returns it).
func (s *Store) holds(ctx context.Context, owner, name string) (store.Room, bool, error) {
	var a account
	_, err := get(ctx, s.accounts, key(owner), &a)
	if errors.Is(err, store.ErrNotFound) {
		return store.Room{}, false, nil
	}
	if i := a.room(name); err == nil && i >= 0 {
		return a.Rooms[i], true, nil
	}
	return store.Room{}, false, err
}

// GetRoom returns the settings of a claimed room, or store.ErrNotFound.
func (s *Store) GetRoom(name string) (r store.Room, err error) {
	err = s.do("get_room", s.opts.OpTimeout, func(ctx context.Context) error {
		owner, _, err := s.entry(ctx, name)
		if err != nil || owner == "" {
			return cmp.Or(err, store.ErrNotFound)
		}
		var held bool
		if r, held, err = s.holds(ctx, owner, name); err == nil && !held {
			err = store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return store.Room{}, fmt.Errorf("get room %q: %w", name, err)
	}
	return r, nil
}

// SetRoom claims the room for owner or changes it (see store.Backend and
// the bbolt implementation for the rules).
func (s *Store) SetRoom(name, owner string, maxOwned int, fn func(*store.Room) error) (store.Room, bool, error) {
	return s.setRoom(name, owner, maxOwned, true, fn)
}

// UpdateRoom is SetRoom for a room owner has claimed already.
func (s *Store) UpdateRoom(name, owner string, fn func(*store.Room) error) (store.Room, error) {
	r, _, err := s.setRoom(name, owner, 0, false, fn)
	return r, err
}

func (s *Store) setRoom(name, owner string, maxOwned int, claim bool, fn func(*store.Room) error) (out store.Room, claimed bool, err error) {
	if err := errors.Join(store.ValidName("room", name), store.ValidName("owner", owner)); err != nil {
		return store.Room{}, false, err
	}
	c := roomChange{s: s, name: name, owner: owner, maxOwned: maxOwned, claim: claim, fn: fn}
	err = s.do("set_room", s.opts.OpTimeout, func(ctx context.Context) error {
		for attempt := range maxAttempts {
			sealed, err := c.try(ctx)
			if sealed || err != nil {
				return err
			}
			s.metrics.conflict("set_room")
			if err := backoff(ctx, attempt); err != nil {
				return err
			}
		}
		return store.ErrConflict
	})
	if err != nil {
		return store.Room{}, false, fmt.Errorf("set room %q: %w", name, err)
	}
	return c.out, c.claimed, nil
}

// roomChange is one SetRoom or UpdateRoom.
type roomChange struct {
	s                  *Store
	name, owner        string
	maxOwned           int
	claim              bool
	fn                 func(*store.Room) error
	out                store.Room
	claimed, addedRoom bool
}

// try makes one attempt: it reads the entry, writes the owner's record and
// seals. sealed false with no error means the seal lost to another claim:
// try again.
func (c *roomChange) try(ctx context.Context) (sealed bool, err error) {
	holder, rev, err := c.s.entry(ctx, c.name)
	if err != nil {
		return false, err
	}
	if holder != "" && holder != c.owner {
		if _, held, err := c.s.holds(ctx, holder, c.name); err != nil || held {
			return false, cmp.Or(err, store.ErrRoomOwned)
		}
		// Stale: released, or its owner's account deleted. Claim it over.
	}
	err = modify(ctx, c.s, "set_room", c.s.accounts, key(c.owner), false, func(a *account, _ bool) (bool, error) {
		return true, c.apply(a, holder == c.owner)
	})
	if err != nil {
		return false, err
	}
	data, err := json.Marshal(roomEntry{Name: c.name, Owner: c.owner})
	if err != nil {
		return false, err
	}
	err = again(ctx, func() (err error) {
		if rev == 0 {
			_, err = c.s.rooms.Create(ctx, key(c.name), data)
		} else {
			_, err = c.s.rooms.Update(ctx, key(c.name), data, rev)
		}
		return err
	})
	if err == nil || !conflict(err) {
		return err == nil, err
	}
	if c.addedRoom { // another claim sealed first: give the room back
		c.s.dropRoom(ctx, c.owner, c.name)
	}
	return false, nil
}

// apply changes the owner's record: the room, changed by fn, or claimed.
// entryMine says the entry names the owner already.
func (c *roomChange) apply(a *account, entryMine bool) error {
	i := a.room(c.name)
	var r store.Room
	c.claimed, c.addedRoom = false, false
	switch {
	case i >= 0 && entryMine: // the owner's: a change
		r = a.Rooms[i]
	case !c.claim:
		return store.ErrNotFound
	case i >= 0: // left by a claim that never sealed: claim it again
		r, c.claimed = a.Rooms[i], true
	default:
		if len(a.Rooms) >= c.maxOwned {
			return store.ErrTooManyRooms
		}
		r, c.claimed, c.addedRoom = store.Room{Name: c.name, Owner: c.owner, Created: time.Now().UTC()}, true, true
	}
	if err := c.fn(&r); err != nil {
		return err
	}
	if r.Name != c.name || r.Owner != c.owner {
		return fmt.Errorf("%w: name and owner cannot change", store.ErrInvalid)
	}
	if err := r.Validate(); err != nil {
		return err
	}
	a.putRoom(r)
	c.out = r
	return nil
}

// dropRoom removes room name from owner's record, best effort.
func (s *Store) dropRoom(ctx context.Context, owner, name string) {
	err := modify(ctx, s, "set_room", s.accounts, key(owner), false, func(a *account, _ bool) (bool, error) {
		i := a.room(name)
		if i >= 0 {
			a.Rooms = slices.Delete(a.Rooms, i, i+1)
		}
		return i >= 0, nil
	})
	if err != nil {
		s.log.Warn("giving back a room claimed by another", "room", name, "err", err)
	}
}

// DeleteRoom releases a room: from its owner's record in one step, then
// its entry. owner "" releases it whoever owns it.
func (s *Store) DeleteRoom(name, owner string) error {
	err := s.do("delete_room", s.opts.OpTimeout, func(ctx context.Context) error {
		holder, rev, err := s.entry(ctx, name)
		if err != nil || holder == "" {
			return cmp.Or(err, store.ErrNotFound)
		}
		if owner != "" && holder != owner {
			if _, held, err := s.holds(ctx, holder, name); err != nil || held {
				return cmp.Or(err, store.ErrRoomOwned)
			}
			return store.ErrNotFound
		}
		err = modify(ctx, s, "delete_room", s.accounts, key(holder), false, func(a *account, _ bool) (bool, error) {
			i := a.room(name)
			if i < 0 {
				return false, store.ErrNotFound
			}
			a.Rooms = slices.Delete(a.Rooms, i, i+1)
			return true, nil
		})
		if err != nil {
			return err
		}
		if err := s.rooms.Delete(ctx, key(name), jetstream.LastRevision(rev)); err != nil && !conflict(err) {
			s.log.Debug("deleting a released room's entry", "room", name, "err", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete room %q: %w", name, err)
	}
	return nil
}

// RoomsOwnedBy lists the rooms owner has claimed, by name.
func (s *Store) RoomsOwnedBy(owner string) (rooms []store.Room, err error) {
	err = s.do("rooms_owned_by", s.opts.OpTimeout, func(ctx context.Context) error {
		var a account
		if _, err := get(ctx, s.accounts, key(owner), &a); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}
		for _, r := range a.Rooms {
			holder, _, err := s.entry(ctx, r.Name)
			if err != nil {
				return err
			}
			if holder == owner { // else a claim that never sealed
				rooms = append(rooms, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rooms of %q: %w", owner, err)
	}
	return rooms, nil
}

// ListRooms lists every claimed room, by name.
func (s *Store) ListRooms() (rooms []store.Room, err error) {
	err = s.do("list_rooms", listTimeout, func(ctx context.Context) error {
		entries, err := list[roomEntry](ctx, s.rooms)
		if err != nil {
			return err
		}
		owners := make(map[string]string, len(entries))
		for _, e := range entries {
			owners[e.Name] = e.Owner
		}
		accts, err := list[account](ctx, s.accounts)
		for _, a := range accts {
			for _, r := range a.Rooms {
				if owners[r.Name] == a.User.Name {
					rooms = append(rooms, r)
				}
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list rooms: %w", err)
	}
	slices.SortFunc(rooms, func(x, y store.Room) int { return cmp.Compare(x.Name, y.Name) })
	return rooms, nil
}

// dropEntries deletes the entries of a deleted account's rooms that still
// name it, best effort: stale entries are taken over anyway.
func (s *Store) dropEntries(ctx context.Context, owner string, rooms []store.Room) {
	for _, r := range rooms {
		if holder, rev, err := s.entry(ctx, r.Name); err == nil && holder == owner {
			_ = s.rooms.Delete(ctx, key(r.Name), jetstream.LastRevision(rev))
		}
	}
}
