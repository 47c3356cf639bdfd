// Package bufpool lends the byte buffers that messages are encoded into on
// their way to a socket or to NATS, and that are free again once written
// or published.
//
// A relayed signal then allocates nothing of its size, so the collector
// runs several times less often; each of its stop-the-world pauses is a
// latency spike for every connection (on a busy two-core machine, a
// millisecond or more while the other thread waits for a core).
package bufpool

import "sync"

// maxPooled bounds the buffers the pool keeps: one grown for a large
// message is left to the collector rather than held for small ones.
const maxPooled = 16 << 10

var pool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// Get borrows an empty buffer. Append to (*bp)[:0] and give the result
// back with Put.
func Get() *[]byte { return pool.Get().(*[]byte) }

// Put gives back b, the buffer borrowed in bp as it is after appending
// (it may have grown), unless it grew past maxPooled. Nothing may use b
// afterwards.
func Put(bp *[]byte, b []byte) {
	if cap(b) <= maxPooled {
		*bp = b[:0]
		pool.Put(bp)
	}
}
