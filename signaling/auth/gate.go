package auth

import (
	"context"
	"errors"
	"time"
)

// ErrBusy is returned by HashGate.Do when its queue is full or the wait
// for a worker ran out. Answer 503 with Retry-After.
var ErrBusy = errors.New("auth: too many password checks at once")

// HashGate bounds the argon2id work running at once. Each hash or
// verification holds Params.Memory (19 MiB by default) while it runs, so
// without a bound n concurrent registrations or logins hold n times that:
// 48 of them took a server from 1 MiB to 914 MiB of heap. With the gate at
// most workers run, at most queue more wait (each for at most maxWait),
// and anyone beyond is refused at once, so memory stays at workers times
// the hash's whatever the number of requests. Safe for concurrent use.
type HashGate struct {
	admit   chan struct{} // running and waiting
	slots   chan struct{} // running
	maxWait time.Duration
}

// NewHashGate returns a gate for workers concurrent hashes (at least 1)
// with a queue of queue more.
func NewHashGate(workers, queue int, maxWait time.Duration) *HashGate {
	workers = max(workers, 1)
	return &HashGate{
		admit:   make(chan struct{}, workers+max(queue, 0)),
		slots:   make(chan struct{}, workers),
		maxWait: maxWait,
	}
}

// Do runs fn once a worker is free. It returns ErrBusy without running fn
// when the queue is full or no worker was free within maxWait, and ctx's
// error when ctx ends first.
func (g *HashGate) Do(ctx context.Context, fn func()) error {
	select {
	case g.admit <- struct{}{}:
	default:
		return ErrBusy
	}
	defer func() { <-g.admit }()
	t := time.NewTimer(g.maxWait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return ErrBusy
	}
	defer func() { <-g.slots }()
	fn()
	return nil
}
