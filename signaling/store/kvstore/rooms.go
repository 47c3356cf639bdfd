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
//
// Undoing is where a slot could leak or a room be lost. A claim whose
// seal failed (lost to another, or an error: JetStream slow or away)
// left the room in the owner's record: owned by nobody, yet counted
// against the owner's limit for as long as the owner did not claim that
// name again. Taking the room out again naively loses a room that
// another claim of the same user sealed meanwhile: that claim found the
// room in the record (left, as far as it could tell, by a claim that
// never sealed), took it on and sealed it. So each claim marks the room
// in the record with an id of its own (account.Claims, and the entry it
// seals), and one whose seal failed undoes only this way (undo): it
// reads the entry; if the entry names the owner, a claim of the owner
// sealed (this one, whose answer was lost, or another), and the room
// stays. Otherwise it writes the entry again as it is, at the revision
// it read, which makes every seal that read that revision fail, and only
// then takes the room out of the record, if the record still carries its
// own mark: a claim of the same user that took the room on since has
// put its mark there, and a later one finds the room gone and adds it
// afresh. A claim whose write of the record has an unknown outcome (its
// answer lost, and the record written again before it was read back) is
// undone the same way, as its room may be in the record. A slot leaks
// only if the store fails the undo too; it is taken back when the owner
// claims that name again (unless another has claimed it meanwhile).

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/khadga/khadga/signaling/store"
	"github.com/nats-io/nats.go/jetstream"
)

// roomEntry is a record of the rooms bucket. Owner "" names nobody: an
// entry a claim wrote back to fence off the seals of others (undo).
type roomEntry struct {
	Name  string `json:"name"`
	Owner string `json:"owner"`
	// Claim is the id of the claim that sealed it (roomChange.id).
	// Droppable: an entry without it (written by an older khadga) only
	// makes a claim whose answer was lost report that it did not claim.
	Claim string `json:"claim,omitempty" khadga:"droppable"`
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
	e, rev, err := s.readEntry(ctx, name)
	return e.Owner, rev, err
}

// readEntry reads a room's entry and its revision; the zero entry and 0
// when there is none.
func (s *Store) readEntry(ctx context.Context, name string) (roomEntry, uint64, error) {
	var e roomEntry
	rev, err := get(ctx, s.rooms, key(name), &e)
	if errors.Is(err, store.ErrNotFound) {
		return roomEntry{}, 0, nil
	}
	return e, rev, err
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
	c := roomChange{s: s, name: name, owner: owner, maxOwned: maxOwned, claim: claim, fn: fn, id: claimID()}
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
	s           *Store
	name, owner string
	maxOwned    int
	claim       bool
	fn          func(*store.Room) error
	id          string // marks the room in the record, and the entry it seals
	out         store.Room
	claimed     bool
	// marked: the last apply put the room in the record with this
	// claim's mark (claimed, and nothing refused it).
	marked bool
}

// claimID is a new claim's id: 64 random bits.
func claimID() string { return strconv.FormatUint(rand.Uint64(), 36) }

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
	c.marked = false
	err = modify(ctx, c.s, "set_room", c.s.accounts, key(c.owner), false, func(a *account, _ bool) (bool, error) {
		return true, c.apply(a, holder == c.owner)
	})
	if err != nil && c.marked && answerLost(err) {
		// The record may hold the room with this claim's mark, unsealed
		// (the write applied, its answer lost, and the record written
		// again since): undo it as a failed seal is undone.
		return c.undo(err)
	}
	if err != nil {
		return false, err
	}
	e := roomEntry{Name: c.name, Owner: c.owner}
	if c.claimed {
		e.Claim = c.id
	}
	data, err := json.Marshal(e)
	if err != nil {
		return false, err
	}
	err = again(ctx, func() error { return cas(ctx, c.s.rooms, key(c.name), data, rev) })
	switch {
	case err == nil:
		return true, nil
	case c.claimed: // the room is in the record, unsealed: undo
		return c.undo(err)
	case conflict(err):
		return false, nil
	default:
		return false, err
	}
}

// undo takes the room out of the owner's record after the claim's seal
// failed with sealErr (or its write of the record, with an unknown
// outcome), unless a claim of the owner sealed it (see the top of this
// file for why in this order). sealed reports that this
// claim's own seal was applied, its answer lost; sealed false with no
// error: try again. It has an OpTimeout of its own: the operation's may
// be spent.
func (c *roomChange) undo(sealErr error) (sealed bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.s.opts.OpTimeout)
	defer cancel()
	for range maxAttempts {
		e, rev, err := c.s.readEntry(ctx, c.name)
		if err != nil {
			return false, c.leaked(sealErr, err)
		}
		if e.Owner == c.owner {
			// Sealed by a claim of the owner: this one (its answer lost),
			// or another, whose room the record holds now. Again, that
			// is a change of the owner's room.
			return e.Claim == c.id, nil
		}
		data, err := json.Marshal(roomEntry{Name: c.name, Owner: e.Owner, Claim: e.Claim})
		if err != nil {
			return false, err
		}
		err = again(ctx, func() error { return cas(ctx, c.s.rooms, key(c.name), data, rev) })
		if conflict(err) {
			continue // written since: read it again
		}
		if err != nil {
			return false, c.leaked(sealErr, err)
		}
		// No seal that read the entry before this write can land now.
		if err := c.s.dropClaim(ctx, c.owner, c.name, c.id); err != nil {
			return false, c.leaked(sealErr, err)
		}
		if conflict(sealErr) {
			return false, nil // another claim sealed first: the room may be owned now
		}
		return false, sealErr
	}
	return false, c.leaked(sealErr, store.ErrConflict)
}

// leaked reports a claim that could not be undone: the room stays in the
// owner's record, counted against the owner's limit until the owner
// claims that name again.
func (c *roomChange) leaked(sealErr, undoErr error) error {
	c.s.log.Warn("a room claim that did not seal stays in its owner's record until the owner claims it again",
		"room", c.name, "owner", c.owner, "err", undoErr)
	if conflict(sealErr) {
		return undoErr // lost to another claim: no error of its own
	}
	return errors.Join(sealErr, undoErr)
}

// apply changes the owner's record: the room, changed by fn, or claimed.
// entryMine says the entry names the owner already.
func (c *roomChange) apply(a *account, entryMine bool) error {
	i := a.room(c.name)
	var r store.Room
	c.claimed, c.marked = false, false
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
		r, c.claimed = store.Room{Name: c.name, Owner: c.owner, Created: time.Now().UTC()}, true
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
	if c.claimed {
		if a.Claims == nil {
			a.Claims = map[string]string{}
		}
		a.Claims[c.name] = c.id // the undo of an earlier claim leaves the room to this one
		c.marked = true
	}
	c.out = r
	return nil
}

// dropClaim removes room name from owner's record if the claim id put it
// there last.
func (s *Store) dropClaim(ctx context.Context, owner, name, id string) error {
	return modify(ctx, s, "set_room", s.accounts, key(owner), false, func(a *account, _ bool) (bool, error) {
		i := a.room(name)
		if i < 0 || a.Claims[name] != id {
			return false, nil
		}
		a.Rooms = slices.Delete(a.Rooms, i, i+1)
		delete(a.Claims, name)
		return true, nil
	})
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
			delete(a.Claims, name)
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
