package kvstore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/khadga/khadga/signaling/store"
	"github.com/nats-io/nats.go/jetstream"
)

// account is the record of one user in the accounts bucket: the user, its
// refresh-token families (oldest first) and its rooms, so that every
// change to a user's sessions or rooms is one write (see the package doc).
type account struct {
	User     store.User     `json:"user"`
	Families []store.Family `json:"families,omitempty"`
	Rooms    []store.Room   `json:"rooms,omitempty"` // by name; see rooms.go
	// Claims names, for each room in Rooms, the last claim that put it
	// there (roomChange.id), so that a claim whose seal failed takes out
	// only a room it put there itself (rooms.go). Droppable: a record an
	// older khadga rewrote without it only makes such a claim leave the
	// room in the record, as older versions always did.
	Claims map[string]string `json:"claims,omitempty" khadga:"droppable"`
}

// family returns the index of family id, or -1.
func (a *account) family(id string) int {
	return slices.IndexFunc(a.Families, func(f store.Family) bool { return f.ID == id })
}

// CreateUser stores a new user; store.ErrUserExists if the name is taken.
func (s *Store) CreateUser(u store.User) error {
	u, err := u.Checked(time.Now())
	if err != nil {
		return err
	}
	return s.do("create_user", s.opts.OpTimeout, func(ctx context.Context) error {
		return modify(ctx, s, "create_user", s.accounts, key(u.Name), true, func(a *account, exists bool) (bool, error) {
			if exists {
				return false, fmt.Errorf("create user %q: %w", u.Name, store.ErrUserExists)
			}
			*a = account{User: u}
			return true, nil
		})
	})
}

// GetUser returns the named user or store.ErrNotFound.
func (s *Store) GetUser(name string) (store.User, error) {
	var a account
	err := s.do("get_user", s.opts.OpTimeout, func(ctx context.Context) error {
		_, err := get(ctx, s.accounts, key(name), &a)
		return err
	})
	if err != nil {
		return store.User{}, fmt.Errorf("get user %q: %w", name, err)
	}
	return a.User, nil
}

// UpdateUser applies fn to the user in one atomic step, retried on
// conflicts (fn may run more than once). fn must not change Name.
func (s *Store) UpdateUser(name string, fn func(*store.User) error) error {
	err := s.do("update_user", s.opts.OpTimeout, func(ctx context.Context) error {
		return modify(ctx, s, "update_user", s.accounts, key(name), false, func(a *account, _ bool) (bool, error) {
			u := a.User
			if err := fn(&u); err != nil {
				return false, err
			}
			if u.Name != name {
				return false, fmt.Errorf("%w: name cannot change", store.ErrInvalid)
			}
			a.User = u
			return true, nil
		})
	})
	if err != nil {
		return fmt.Errorf("update user %q: %w", name, err)
	}
	return nil
}

// DeleteUser removes the user with all its refresh-token families and
// rooms in one step, and returns the families' ids. store.ErrNotFound if
// absent.
func (s *Store) DeleteUser(name string) (logins []string, err error) {
	return s.DeleteUserIf(name, nil)
}

// DeleteUserIf is DeleteUser when check, given the record at the revision
// the deletion is conditional on, returns nil (a nil check always
// passes). check's error deletes nothing and is returned wrapped.
func (s *Store) DeleteUserIf(name string, check func(store.User) error) (logins []string, err error) {
	var gone account
	err = s.do("delete_user", s.opts.OpTimeout, func(ctx context.Context) error {
		err := remove(ctx, s, "delete_user", s.accounts, key(name), func(a *account) error {
			if check != nil {
				if err := check(a.User); err != nil {
					return err
				}
			}
			gone = *a
			return nil
		})
		if err == nil {
			s.dropIndex(ctx, gone.Families)
			s.dropEntries(ctx, name, gone.Rooms)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delete user %q: %w", name, err)
	}
	for _, f := range gone.Families {
		logins = append(logins, f.ID)
	}
	return logins, nil
}

// ListUsers returns every user sorted by name.
func (s *Store) ListUsers() ([]store.User, error) {
	accts, err := s.listAccounts("list_users")
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	users := make([]store.User, 0, len(accts))
	for _, a := range accts {
		users = append(users, a.User)
	}
	return users, nil
}

// listAccounts reads every account, sorted by user name.
func (s *Store) listAccounts(op string) (accts []account, err error) {
	err = s.do(op, listTimeout, func(ctx context.Context) error {
		accts, err = list[account](ctx, s.accounts)
		return err
	})
	slices.SortFunc(accts, func(a, b account) int { return cmp.Compare(a.User.Name, b.User.Name) })
	return accts, err
}

// CreateFamily stores a new family in its user's record, dropping the
// user's oldest beyond MaxFamiliesPerUser in the same step. The id is
// claimed first in the families index, which makes it unique.
func (s *Store) CreateFamily(f store.Family) error {
	f, err := f.Checked(time.Now())
	if err != nil {
		return err
	}
	err = s.do("create_family", s.opts.OpTimeout, func(ctx context.Context) error {
		ttl := max(time.Until(f.Expires), 0) + indexGrace
		err := again(ctx, func() error {
			_, err := s.families.Create(ctx, key(f.ID), []byte(f.User), jetstream.KeyTTL(ttl))
			return err
		})
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				return store.ErrFamilyExists
			}
			return err
		}
		var evicted []store.Family
		err = modify(ctx, s, "create_family", s.accounts, key(f.User), false, func(a *account, _ bool) (bool, error) {
			a.Families = append(a.Families, f)
			slices.SortStableFunc(a.Families, func(x, y store.Family) int { return x.Created.Compare(y.Created) })
			n := max(len(a.Families)-s.opts.MaxFamiliesPerUser, 0)
			evicted = slices.Clone(a.Families[:n])
			a.Families = a.Families[n:]
			return true, nil
		})
		if err != nil {
			s.dropIndex(ctx, []store.Family{f}) // the id is free again
			return fmt.Errorf("user %q: %w", f.User, err)
		}
		s.dropIndex(ctx, evicted)
		return nil
	})
	if err != nil {
		return fmt.Errorf("create family: %w", err)
	}
	return nil
}

// dropIndex deletes the index entries of families that are gone. It is
// best effort: an entry left behind points to nothing and expires. The
// purge's marker expires too (indexMarkerTTL): family ids are never
// reused, so markers kept for good, one per sign-in ever made, would grow
// the bucket's stream for as long as the cluster ran.
func (s *Store) dropIndex(ctx context.Context, fams []store.Family) {
	for _, f := range fams {
		if err := s.families.Purge(ctx, key(f.ID), jetstream.PurgeTTL(indexMarkerTTL)); err != nil {
			s.log.Debug("dropping a family index entry", "err", err)
		}
	}
}

// owner finds the user of family id through the index.
func (s *Store) owner(ctx context.Context, id string) (string, error) {
	var user []byte
	err := again(ctx, func() (err error) { user, _, err = s.families.latest(ctx, key(id)); return err })
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", store.ErrNotFound
	}
	if err != nil {
		return "", err
	}
	return string(user), nil
}

// modifyFamily applies fn to family id in its user's record, in one step.
// ErrNotFound if the family or its user is gone. ours, if set, recognises
// fn's change in a family (modifyKnowing).
func (s *Store) modifyFamily(op, id string, fn func(f *store.Family) (bool, error), ours func(f *store.Family) bool) (f store.Family, err error) {
	var oursIn func(a *account) bool
	if ours != nil {
		oursIn = func(a *account) bool { i := a.family(id); return i >= 0 && ours(&a.Families[i]) }
	}
	err = s.do(op, s.opts.OpTimeout, func(ctx context.Context) error {
		user, err := s.owner(ctx, id)
		if err != nil {
			return err
		}
		return modifyKnowing(ctx, s, op, s.accounts, key(user), false, func(a *account, _ bool) (bool, error) {
			i := a.family(id)
			if i < 0 {
				return false, store.ErrNotFound
			}
			write, err := fn(&a.Families[i])
			f = a.Families[i]
			return write, err
		}, oursIn)
	})
	return f, err
}

// GetFamily returns the family or store.ErrNotFound.
func (s *Store) GetFamily(id string) (store.Family, error) {
	f, err := s.modifyFamily("get_family", id, func(*store.Family) (bool, error) { return false, nil }, nil)
	if err != nil {
		return store.Family{}, fmt.Errorf("get family: %w", err)
	}
	return f, nil
}

// RotateFamily is store.Store.RotateFamily's rule (store.Family.Rotate) as
// one compare-and-swap of the user's record: of two nodes presenting the
// same token at once, one rotates and the other, retrying, finds reuse
// and revokes the family.
func (s *Store) RotateFamily(id string, presentedHash, nextHash []byte, now time.Time) (store.Family, error) {
	if len(nextHash) == 0 {
		return store.Family{}, fmt.Errorf("rotate family: %w: empty next hash", store.ErrInvalid)
	}
	// The new hash is random: a family that holds it holds this rotation,
	// whatever was written to the user's record after it; a revocation
	// for reuse is held by a revoked family.
	var reuse bool
	f, err := s.modifyFamily("rotate_family", id, func(f *store.Family) (bool, error) {
		err := f.Rotate(presentedHash, nextHash, now)
		reuse = errors.Is(err, store.ErrTokenReuse)
		return !errors.Is(err, store.ErrRevoked), err
	}, func(f *store.Family) bool { return reuse && f.Revoked || !reuse && bytes.Equal(f.Current, nextHash) })
	switch {
	case errors.Is(err, store.ErrTokenReuse):
		return f, err
	case err != nil:
		return store.Family{}, fmt.Errorf("rotate family: %w", err)
	}
	return f, nil
}

// RevokeFamily marks the family revoked. store.ErrNotFound if unknown.
func (s *Store) RevokeFamily(id string) error {
	_, err := s.modifyFamily("revoke_family", id, func(f *store.Family) (bool, error) {
		write := !f.Revoked
		f.Revoked = true
		return write, nil
	}, func(f *store.Family) bool { return f.Revoked })
	if err != nil {
		return fmt.Errorf("revoke family: %w", err)
	}
	return nil
}

// RevokeUserFamilies revokes every family of the user.
func (s *Store) RevokeUserFamilies(user string) error {
	_, err := s.RevokeUserFamilyIDs(user)
	return err
}

// RevokeUserFamilyIDs revokes every family of the user in one step and
// returns the ids it revoked. No error for a user without families or
// without an account.
func (s *Store) RevokeUserFamilyIDs(user string) (ids []string, err error) {
	// A family is never un-revoked: a record in which every family this
	// write revoked is revoked, or gone, holds the write (whoever else
	// wrote after it). Reported as failed, the caller's retry would find
	// nothing left to revoke, and the sockets of those sign-ins would
	// never be closed.
	revoked := func(a *account) bool {
		for _, id := range ids {
			if i := a.family(id); i >= 0 && !a.Families[i].Revoked {
				return false
			}
		}
		return true
	}
	err = s.do("revoke_user_families", s.opts.OpTimeout, func(ctx context.Context) error {
		return modifyKnowing(ctx, s, "revoke_user_families", s.accounts, key(user), false, func(a *account, _ bool) (bool, error) {
			ids = ids[:0]
			for i := range a.Families {
				if !a.Families[i].Revoked {
					a.Families[i].Revoked = true
					ids = append(ids, a.Families[i].ID)
				}
			}
			return len(ids) > 0, nil
		}, revoked)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("revoke families of %q: %w", user, err)
	}
	return ids, nil
}

// PurgeExpired deletes every family whose Expires is at or before now,
// one user record at a time, and returns how many it deleted.
func (s *Store) PurgeExpired(now time.Time) (n int, err error) {
	accts, err := s.listAccounts("purge_expired")
	if err != nil {
		return 0, fmt.Errorf("purge expired families: %w", err)
	}
	err = s.do("purge_expired", listTimeout, func(ctx context.Context) error {
		for _, acct := range accts {
			if !slices.ContainsFunc(acct.Families, expired(now)) {
				continue
			}
			dead, err := s.purgeUser(ctx, acct.User.Name, now)
			if err != nil {
				return fmt.Errorf("families of %q: %w", acct.User.Name, err)
			}
			n += len(dead)
			s.dropIndex(ctx, dead)
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("purge expired families: %w", err)
	}
	return n, nil
}

// purgeUser deletes the user's expired families in one step and returns
// them.
func (s *Store) purgeUser(ctx context.Context, user string, now time.Time) (dead []store.Family, err error) {
	err = modify(ctx, s, "purge_expired", s.accounts, key(user), false, func(a *account, _ bool) (bool, error) {
		dead = dead[:0]
		for _, f := range a.Families {
			if expired(now)(f) {
				dead = append(dead, f)
			}
		}
		a.Families = slices.DeleteFunc(a.Families, expired(now))
		return len(dead) > 0, nil
	})
	if errors.Is(err, store.ErrNotFound) { // deleted meanwhile, with its families
		return nil, nil
	}
	return dead, err
}

func expired(now time.Time) func(store.Family) bool {
	return func(f store.Family) bool { return !now.Before(f.Expires) }
}

// ListFamilies returns every family, by user and then creation time.
func (s *Store) ListFamilies() ([]store.Family, error) {
	accts, err := s.listAccounts("list_families")
	if err != nil {
		return nil, fmt.Errorf("list families: %w", err)
	}
	var fams []store.Family
	for _, a := range accts {
		fams = append(fams, a.Families...)
	}
	return fams, nil
}
