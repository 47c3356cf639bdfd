package kvstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/khadga/khadga/internal/natsconn"
	"github.com/khadga/khadga/signaling/store"
	"github.com/nats-io/nats.go/jetstream"
)

// maxAttempts bounds the tries of one read-modify-write; the method's
// OpTimeout bounds them too.
const maxAttempts = 32

// electionWait is how long a request keeps trying while its stream has
// no leader: a stream whose leader's server stopped elects another in a
// second or a few, and meanwhile its requests find no responders or are
// answered "JetStream system temporarily unavailable". Past it the
// request fails (ErrUnavailable) rather than making the client wait.
const electionWait = 3 * time.Second

// again runs one request, and again while its stream elects a leader
// (nobody acted on it, so it is safe to send again), for up to
// electionWait.
func again(ctx context.Context, req func() error) error {
	start := time.Now()
	for {
		err := req()
		if !natsconn.Leaderless(err) || time.Since(start) > electionWait {
			return err
		}
		if pause(ctx, 100*time.Millisecond) != nil {
			return err
		}
	}
}

// modify is one read-modify-write of key k in kv, as one atomic step: it
// reads the record and its revision, lets fn change it, and writes it
// with that revision, starting again from a fresh read when another
// writer got there first. An absent record is ErrNotFound unless create
// is set; fn then gets the zero T and exists false, and the write creates
// the key. fn returns whether to write; its error is returned either way,
// after the write when there is one (so RotateFamily can commit a
// revocation and report reuse).
func modify[T any](ctx context.Context, s *Store, op string, kv *bucket, k string, create bool,
	fn func(v *T, exists bool) (write bool, err error)) error {
	return modifyKnowing(ctx, s, op, kv, k, create, fn, nil)
}

// modifyKnowing is modify for a write that it can recognise in a record
// that other writers changed after it: ours reports whether a record
// holds it. When a write's answer is lost (settle), the record alone
// tells whether it was applied only while nobody else wrote since; a
// refresh rotation, whose new hash is random, can be told even then.
func modifyKnowing[T any](ctx context.Context, s *Store, op string, kv *bucket, k string, create bool,
	fn func(v *T, exists bool) (write bool, err error), ours func(cur *T) bool) error {
	for attempt := range maxAttempts {
		var v T
		rev, err := get(ctx, kv, k, &v)
		if errors.Is(err, store.ErrNotFound) && create {
			err = nil
		}
		if err != nil {
			return err
		}
		write, ferr := fn(&v, rev != 0)
		if !write {
			return ferr
		}
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		err = again(ctx, func() error { return cas(ctx, kv, k, data, rev) })
		if answerLost(err) {
			err = settle(s, op, kv, k, data, rev, err, ours)
		}
		if err == nil {
			return ferr
		}
		if !conflict(err) {
			return err
		}
		s.metrics.conflict(op)
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
	}
	return store.ErrConflict
}

// cas writes data at k if the record is still at revision rev (absent,
// for rev 0).
func cas(ctx context.Context, kv *bucket, k string, data []byte, rev uint64) (err error) {
	if rev == 0 {
		_, err = kv.Create(ctx, k, data)
	} else {
		_, err = kv.Update(ctx, k, data, rev)
	}
	return err
}

// answerLost reports whether err leaves a write's outcome unknown: the
// request timed out or its connection failed, so the server may have
// applied it. An answer from JetStream (an API error, a revision
// mismatch) and a request nobody received (no responders) are outcomes.
func answerLost(err error) bool {
	var apiErr *jetstream.APIError
	return err != nil && !conflict(err) && !natsconn.Leaderless(err) && !errors.As(err, &apiErr)
}

// settle finds out what became of a compare-and-swap whose answer was
// lost (lost, the error), with a fresh OpTimeout, since the operation's
// own may be spent. Without it, a refresh applied whose answer timed out
// would be reported as failed; the client's retry with the same token
// would then find it rotated away and revoke the family as reuse, signing
// the user out for a slow answer. It reads the record: our data there
// (or, with ours, a record that holds our write under later ones) means
// the write was applied (nil). The record still at rev means it was not,
// so far; the same write is sent again, and as it expects the same
// revision, at most one of the two can apply. A record changed since is a
// conflict if ours says it does not hold our write (the caller starts
// again from a fresh read); without ours the outcome stays unknown, as it
// does when the read fails, and lost is returned.
func settle[T any](s *Store, op string, kv *bucket, k string, data []byte, rev uint64, lost error, ours func(*T) bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.OpTimeout)
	defer cancel()
	s.metrics.answerLost(op)
	for range 3 {
		cur, curRev, err := kv.latest(ctx, k)
		switch {
		case err == nil && bytes.Equal(cur, data):
			return nil
		case err == nil && curRev != rev && ours != nil:
			if holds(cur, ours) {
				return nil
			}
			return jetstream.ErrKeyRevisionMismatch // not applied, and now it cannot be
		case err == nil && curRev != rev, errors.Is(err, jetstream.ErrKeyNotFound) && rev != 0:
			// Changed since: by our write and then another, or by another
			// alone. Without ours nothing tells which, and running fn again
			// on a record that holds our write would apply it twice.
			return lost
		case err != nil && !errors.Is(err, jetstream.ErrKeyNotFound):
			return lost
		}
		if err := cas(ctx, kv, k, data, rev); !conflict(err) && !answerLost(err) {
			return err // applied now (nil), or refused
		}
		// Conflict: the first write landed meanwhile, or another
		// writer's did; or this one's answer is lost too (it may have
		// landed: reported lost, a rotation applied would be a 503, and
		// the client's retry would revoke its family as reuse). The next
		// read tells which.
	}
	return lost
}

// holds reports whether the record data holds a write that ours
// recognises.
func holds[T any](data []byte, ours func(*T) bool) bool {
	var v T
	return ours != nil && json.Unmarshal(data, &v) == nil && ours(&v)
}

// remove deletes key k once fn, given the record, agrees (fn's error is
// returned without deleting), retrying if the record changes meanwhile.
// ErrNotFound if it is absent.
func remove[T any](ctx context.Context, s *Store, op string, kv *bucket, k string, fn func(v *T) error) error {
	for attempt := range maxAttempts {
		var v T
		rev, err := get(ctx, kv, k, &v)
		if err != nil {
			return err
		}
		if err := fn(&v); err != nil {
			return err
		}
		err = again(ctx, func() error { return kv.Delete(ctx, k, jetstream.LastRevision(rev)) })
		if err == nil || !conflict(err) {
			return err
		}
		s.metrics.conflict(op)
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
	}
	return store.ErrConflict
}

// get decodes the record at k into v and returns its revision, or
// ErrNotFound.
func get(ctx context.Context, kv *bucket, k string, v any) (uint64, error) {
	var data []byte
	var rev uint64
	err := again(ctx, func() (err error) { data, rev, err = kv.latest(ctx, k); return err })
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, store.ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return 0, fmt.Errorf("decode %s/%s: %w", kv.Bucket(), k, err)
	}
	return rev, nil
}

// conflict reports whether a write lost to another writer.
func conflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)
}

// backoff waits a little before another attempt, longer each time and
// jittered, so that writers racing for one record spread out.
func backoff(ctx context.Context, attempt int) error {
	d := min(time.Millisecond<<min(attempt, 6), 50*time.Millisecond)
	return pause(ctx, d/2+rand.N(d/2+1))
}

// pause waits for d, or until ctx ends and returns its error.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// list decodes every record of kv, in no particular order: the current
// values a watch delivers, and, read one by one from the stream's leader,
// those of the keys it has that the watch did not deliver. A watch's
// current values are no snapshot: a record another writer rewrites while
// they are delivered can be missing from them (its old revision is gone
// when the watch reaches it, and the new one comes after the watch says
// that it has delivered them all); a node that listed the signing keys so
// took a key for retired, and never ended the sessions of its tokens when
// it was retired.
func list[T any](ctx context.Context, kv *bucket) ([]T, error) {
	var w jetstream.KeyWatcher
	err := again(ctx, func() (err error) { w, err = kv.WatchAll(ctx); return err })
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var out []T
	add := func(k string, data []byte) error {
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return fmt.Errorf("decode %s/%s: %w", kv.Bucket(), k, err)
		}
		out = append(out, v)
		return nil
	}
	seen := make(map[string]bool) // values and deletes
	for current := false; !current; {
		select {
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return nil, fmt.Errorf("list %s: watcher stopped", kv.Bucket())
			case e == nil: // every current record has been delivered, or nearly
				current = true
			case e.Operation() != jetstream.KeyValuePut:
				seen[e.Key()] = true
			default:
				seen[e.Key()] = true
				if err := add(e.Key(), e.Value()); err != nil {
					return nil, err
				}
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("list %s: %w", kv.Bucket(), ctx.Err())
		}
	}
	var keys []string
	if err := again(ctx, func() (err error) { keys, err = kv.keys(ctx); return err }); err != nil {
		return nil, err
	}
	for _, k := range keys {
		if seen[k] {
			continue
		}
		var data []byte
		err := again(ctx, func() (err error) { data, _, err = kv.latest(ctx, k); return err })
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted
		}
		if err != nil {
			return nil, err
		}
		if err := add(k, data); err != nil {
			return nil, err
		}
	}
	return out, nil
}
