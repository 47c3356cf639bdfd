package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// Limits on audit fields: they often carry text from the network (user
// names, addresses), so they are truncated rather than trusted.
const (
	maxAuditField  = 256
	maxAuditDetail = 2048
	// DefaultAuditPage is the number of events AuditLog returns when limit
	// is not positive.
	DefaultAuditPage = 100
)

// AuditEvent is one security-relevant event: a login, a failed login, a
// refresh-token reuse, an account change. Seq is assigned by the store.
type AuditEvent struct {
	Seq    uint64    `json:"-"`
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	User   string    `json:"user,omitempty"`
	Addr   string    `json:"addr,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// Audit appends ev to the log under the next sequence number. A zero Time
// is set to now; over-long fields are truncated. When the log holds more
// than Options.AuditMax events plus some slack, the oldest are deleted in
// the same transaction, so trimming is occasional and each trim is bounded.
func (s *Store) Audit(ev AuditEvent) error {
	ev = ev.Bounded(time.Now())
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		if err := putJSON(b, be64(seq), ev); err != nil {
			return err
		}
		return s.trimAudit(b, seq)
	})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// trimAudit deletes the oldest events once the log exceeds AuditMax by the
// slack. Keys are contiguous sequence numbers (a rolled-back transaction
// rolls back its sequence too) and only the oldest are deleted, so the count
// is last-first+1 without a scan.
func (s *Store) trimAudit(b *bolt.Bucket, last uint64) error {
	keep := uint64(s.opts.AuditMax)
	slack := keep/16 + 1
	c := b.Cursor()
	k, _ := c.First()
	if k == nil {
		return nil
	}
	first := binary.BigEndian.Uint64(k)
	if last-first+1 <= keep+slack {
		return nil
	}
	for n := last - first + 1 - keep; n > 0 && k != nil; n-- {
		if err := c.Delete(); err != nil {
			return err
		}
		// After Delete the cursor may not point at the next key; re-seek.
		k, _ = c.First()
	}
	return nil
}

// Bounded returns ev as every Backend stores it: a zero Time set to now
// (UTC), and fields that come from the network truncated to their limits
// (256 bytes, 2048 for Detail) without splitting a UTF-8 sequence.
func (ev AuditEvent) Bounded(now time.Time) AuditEvent {
	if ev.Time.IsZero() {
		ev.Time = now.UTC()
	}
	ev.Kind = truncate(ev.Kind, maxAuditField)
	ev.User = truncate(ev.User, maxAuditField)
	ev.Addr = truncate(ev.Addr, maxAuditField)
	ev.Detail = truncate(ev.Detail, maxAuditDetail)
	return ev
}

// AuditPage is the number of events AuditLog returns for limit: limit,
// or DefaultAuditPage when it is not positive, at most max (the events
// kept).
func AuditPage(limit, max int) int {
	if limit <= 0 {
		limit = DefaultAuditPage
	}
	return min(limit, max)
}

// AuditLog returns up to limit events, newest first. A limit that is not
// positive means DefaultAuditPage; it is capped at Options.AuditMax.
func (s *Store) AuditLog(limit int) ([]AuditEvent, error) {
	limit = AuditPage(limit, s.opts.AuditMax)
	var out []AuditEvent
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var ev AuditEvent
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("decode audit event %x: %w", k, err)
			}
			ev.Seq = binary.BigEndian.Uint64(k)
			out = append(out, ev)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return out, nil
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
