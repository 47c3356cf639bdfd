package store

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// CopyStats counts what Copy copied.
type CopyStats struct {
	Users, Families, SigningKeys, BotTokens, Secrets, Rooms, AuditEvents int
}

// Copy copies every record of src into dst, through the Backend methods:
// users, then their refresh-token families (revoked and rotated state
// included, so an outstanding refresh token keeps working exactly once
// more), signing keys (retired ones included), secrets (replacing dst's of
// the same name), room settings and the audit log (oldest first; dst numbers the events
// anew). It is how `khadga migrate` moves a single-node store into a
// cluster, and how the cluster's backups and restores go to and from the
// bbolt file format.
//
// dst should hold no users or families: an existing one is an error
// (ErrUserExists, ErrFamilyExists) and Copy stops there. Each list is read
// at once, so the copy of each kind of record is consistent; a src that
// others change meanwhile may give a copy whose kinds were read a moment
// apart.
func Copy(dst, src Backend) (CopyStats, error) {
	var st CopyStats
	users, err := src.ListUsers()
	if err != nil {
		return st, err
	}
	for _, u := range users {
		if err := dst.CreateUser(u); err != nil {
			return st, fmt.Errorf("copy user %q: %w", u.Name, err)
		}
		st.Users++
	}
	fams, err := src.ListFamilies()
	if err != nil {
		return st, err
	}
	for _, f := range fams {
		err := dst.CreateFamily(f)
		if errors.Is(err, ErrNotFound) {
			continue // its account was created after ListUsers: not in this copy
		}
		if err != nil {
			return st, fmt.Errorf("copy a family of %q: %w", f.User, err)
		}
		st.Families++
	}
	if st.SigningKeys, err = copyKeys(dst, src); err != nil {
		return st, err
	}
	if st.BotTokens, err = copyBotTokens(dst, src); err != nil {
		return st, err
	}
	if st.Secrets, err = copySecrets(dst, src); err != nil {
		return st, err
	}
	if st.Rooms, err = copyRooms(dst, src); err != nil {
		return st, err
	}
	st.AuditEvents, err = copyAudit(dst, src)
	return st, err
}

func copyKeys(dst, src Backend) (int, error) {
	keys, err := src.SigningKeys()
	if err != nil {
		return 0, err
	}
	for _, k := range keys {
		if err := dst.AddSigningKey(k); err != nil {
			return 0, fmt.Errorf("copy signing key %q: %w", k.ID, err)
		}
	}
	return len(keys), nil
}

func copyBotTokens(dst, src Backend) (int, error) {
	ts, err := src.ListBotTokens()
	if err != nil {
		return 0, err
	}
	for _, t := range ts {
		if err := dst.CreateBotToken(t); err != nil {
			return 0, fmt.Errorf("copy bot token %q: %w", t.ID, err)
		}
	}
	return len(ts), nil
}

func copySecrets(dst, src Backend) (int, error) {
	secrets, err := src.Secrets()
	if err != nil {
		return 0, err
	}
	for name, v := range secrets {
		if _, err := dst.UpdateSecret(name, func([]byte) ([]byte, error) { return v, nil }); err != nil {
			return 0, fmt.Errorf("copy secret %q: %w", name, err)
		}
	}
	return len(secrets), nil
}

func copyRooms(dst, src Backend) (n int, err error) {
	rooms, err := src.ListRooms()
	if err != nil {
		return 0, err
	}
	for _, r := range rooms {
		// No limit on owned rooms: the source kept its own.
		_, _, err := dst.SetRoom(r.Name, r.Owner, math.MaxInt, func(d *Room) error { *d = r; return nil })
		if errors.Is(err, ErrNotFound) {
			continue // its owner was deleted after ListUsers: not in this copy
		}
		if err != nil {
			return n, fmt.Errorf("copy room %q: %w", r.Name, err)
		}
		n++
	}
	return n, nil
}

func copyAudit(dst, src Backend) (int, error) {
	evs, err := src.AuditLog(math.MaxInt)
	if err != nil {
		return 0, err
	}
	slices.Reverse(evs) // AuditLog is newest first
	for _, ev := range evs {
		if err := dst.Audit(ev); err != nil {
			return 0, fmt.Errorf("copy audit event: %w", err)
		}
	}
	return len(evs), nil
}
