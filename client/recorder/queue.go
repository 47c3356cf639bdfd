package recorder

import (
	"sync"
	"sync/atomic"
)

// Frame is a converted frame on its way to a clip.
type Frame struct {
	RGB []byte
	// TS is the capture time, Unix microseconds.
	TS int64
	// Src is the decoded size.
	Src Size
}

// Queue is a bounded frame queue between a track's decoder and its writer.
// When it is full, Push drops the oldest frame and counts it, so a slow disk
// costs frames, never memory or a stalled decoder.
type Queue struct {
	mu      sync.Mutex
	buf     []Frame // ring
	head, n int
	closed  bool
	ready   chan struct{} // has a token while frames wait or after Close
	dropped atomic.Int64
	// free recycles frame buffers: dropped and written frames come back.
	free chan []byte
}

// NewQueue makes a queue that holds up to size frames.
func NewQueue(size int) *Queue {
	size = max(size, 1)
	return &Queue{buf: make([]Frame, size), ready: make(chan struct{}, 1), free: make(chan []byte, size+2)}
}

// Buffer returns a recycled buffer of n bytes, or a new one.
func (q *Queue) Buffer(n int) []byte {
	select {
	case b := <-q.free:
		if cap(b) >= n {
			return b[:n]
		}
	default:
	}
	return make([]byte, n)
}

// Recycle hands a frame buffer back for reuse.
func (q *Queue) Recycle(b []byte) {
	select {
	case q.free <- b:
	default:
	}
}

// Push adds a frame, dropping the oldest if the queue is full. It reports
// false if the queue is closed (and recycles f).
func (q *Queue) Push(f Frame) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		q.Recycle(f.RGB)
		return false
	}
	var old []byte
	if q.n == len(q.buf) {
		old = q.buf[q.head].RGB
		q.head = (q.head + 1) % len(q.buf)
		q.n--
		q.dropped.Add(1)
	}
	q.buf[(q.head+q.n)%len(q.buf)] = f
	q.n++
	q.mu.Unlock()
	if old != nil {
		q.Recycle(old)
	}
	q.signal()
	return true
}

func (q *Queue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// Ready has a value when Pop may return a frame or the queue was closed.
func (q *Queue) Ready() <-chan struct{} { return q.ready }

// Pop takes the oldest frame. ok is false when the queue is empty; done is
// true when it is also closed.
func (q *Queue) Pop() (f Frame, ok, done bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return Frame{}, false, q.closed
	}
	f = q.buf[q.head]
	q.buf[q.head] = Frame{}
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	if q.n > 0 || q.closed {
		q.signal()
	}
	return f, true, false
}

// Close ends the queue; frames already in it can still be popped.
func (q *Queue) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// Dropped counts frames dropped because the queue was full.
func (q *Queue) Dropped() int64 { return q.dropped.Load() }

// Len is the number of frames waiting.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}
