package kvstore

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// watch hands fn every entry of kv matching filter (a key, or ">" for
// all): the current ones, then nil (the current ones are all there), then
// every change any node makes, until ctx ends. When NATS drops the watch
// (an outage), or the connection comes back after one, it starts again
// from the last revision seen, so a change made meanwhile arrives once
// NATS is back.
func (s *Store) watch(ctx context.Context, kv jetstream.KeyValue, filter string, fn func(jetstream.KeyValueEntry)) {
	var last uint64
	for ctx.Err() == nil {
		var opts []jetstream.WatchOpt
		if last > 0 {
			opts = append(opts, jetstream.ResumeFromRevision(last+1))
		}
		back := s.conn.Reconnected()
		w, err := kv.Watch(ctx, filter, opts...)
		if err == nil {
			var again bool
			last, again = follow(ctx, w, back, last, fn)
			_ = w.Stop()
			if again {
				continue // at once: the connection is back
			}
		} else if ctx.Err() == nil {
			s.log.Debug("watching a bucket", "bucket", kv.Bucket(), "err", err)
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// follow hands the entries of w to fn until w or ctx ends or the
// connection comes back (back closes: reconnected is true), and returns
// the last revision seen.
func follow(ctx context.Context, w jetstream.KeyWatcher, back <-chan struct{}, last uint64,
	fn func(jetstream.KeyValueEntry)) (_ uint64, reconnected bool) {
	for {
		select {
		case <-ctx.Done():
			return last, false
		case <-back:
			return last, true
		case e, ok := <-w.Updates():
			if !ok {
				return last, false
			}
			if e != nil {
				last = e.Revision()
			}
			fn(e)
		}
	}
}

// WatchSigningKeys calls fn after any node adds, changes or retires a
// signing key, and once at the start, until ctx ends, so that every node
// verifies with the keys the others made (package signaling reloads its
// auth.Keys).
func (s *Store) WatchSigningKeys(ctx context.Context, fn func()) {
	current := false // the keys there were at the start, one call for all
	s.watch(ctx, s.keys, ">", func(e jetstream.KeyValueEntry) {
		if e == nil || current {
			current = true
			fn()
		}
	})
}
