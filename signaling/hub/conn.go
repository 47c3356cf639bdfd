package hub

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Errors of conn.enqueue.
var (
	// errConnClosing: the connection takes no more messages (a close is
	// queued, or it is gone); the session keeps them for a resume.
	errConnClosing = errors.New("hub: connection closing")
	// errSlowConsumer: the send queue was full, and the connection has been
	// dropped.
	errSlowConsumer = errors.New("hub: slow consumer")
)

// conn is one WebSocket connection of a session. Its reader is the
// goroutine in ServeConn. Its writer is a goroutine that exists only while
// the send queue is not empty, so an idle connection holds no writer stack
// and no write buffer; a signal for a connection with nothing queued is
// written by the sender's reader itself (direct.go).
type conn struct {
	h        *Hub
	ws       *websocket.Conn
	sock     *sockConn // the socket, if Upgrade wrapped it; else nil
	s        *session  // set by attach before anyone else can see c
	key      string
	presence bool

	lastSeen atomic.Int64 // unix nanoseconds of the last frame read

	// mu guards the send queue and the writer's state. Nothing else is
	// locked while it is held.
	mu         sync.Mutex
	q          []queued
	writing    bool // a writer goroutine runs
	closing    bool // a close frame is queued: no more messages
	closed     bool // nothing more will be written
	pingQueued bool
	partial    *partialWrite // the rest of a direct write, for the writer
	room       chan struct{} // closed when the writer takes a batch; made only when send waits
	writer     sync.WaitGroup

	// Reader-only state: token buckets for the message rate and for abuse.
	tokens, abuse     float64
	tokensAt, abuseAt int64
	handedOff         int64 // unix nanoseconds of the reader's last hand-off
}

func (c *conn) peer() string {
	if c.s == nil {
		return ""
	}
	return c.s.member.Peer
}

// queuePool recycles send-queue slices, so that idle connections hold none.
var queuePool = sync.Pool{New: func() any { q := make([]queued, 0, 16); return &q }}

func getQueue() []queued { return (*queuePool.Get().(*[]queued))[:0] }

func putQueue(q []queued) {
	if cap(q) > 1024 {
		return
	}
	clear(q[:cap(q)])
	q = q[:0]
	queuePool.Put(&q)
}

// enqueue adds a message to the send queue and starts the writer if needed.
// A full queue drops the connection: a client that does not read must not
// hold memory or block anyone.
func (c *conn) enqueue(it queued) error {
	c.mu.Lock()
	if c.closing || c.closed {
		c.mu.Unlock()
		return errConnClosing
	}
	limit := c.h.cfg.SendQueue
	if it.Kind == KindReport {
		limit *= 2
	}
	if len(c.q) >= limit {
		c.closed = true
		c.wakeLocked()
		c.mu.Unlock()
		c.h.stats.slow.Add(1)
		c.h.log.Info("hub: dropping slow consumer", "peer", c.peer(), "queue", limit, "kind", it.Kind)
		_ = c.ws.Close()
		return errSlowConsumer
	}
	c.pushLocked(it)
	c.mu.Unlock()
	return nil
}

// pushLocked appends without a limit. c.mu is held.
func (c *conn) pushLocked(it queued) {
	if c.q == nil {
		c.q = getQueue()
	}
	c.q = append(c.q, it)
	if !c.writing {
		c.writing = true
		c.writer.Add(1)
		go c.writeLoop()
	}
}

// send queues an answer to this connection's own client. It runs on the
// connection's reader, and when the queue is full it waits for the writer
// to make room, up to WriteWait: a client that sends requests faster than it
// reads the answers is slowed down by TCP, not dropped. One that does not
// read at all is dropped when the writer times out.
func (c *conn) send(b []byte) {
	it := queued{Envelope: Envelope{Msg: b, Kind: KindEvent}}
	var timeout <-chan time.Time
	for {
		c.mu.Lock()
		if c.closing || c.closed {
			c.mu.Unlock()
			return
		}
		if len(c.q) < c.h.cfg.SendQueue {
			c.pushLocked(it)
			c.mu.Unlock()
			return
		}
		if c.room == nil {
			c.room = make(chan struct{})
		}
		room := c.room
		c.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(c.h.cfg.WriteWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-room:
		case <-timeout:
			_ = c.enqueue(it) // still full: drops the connection
			return
		}
	}
}

// ping queues a WebSocket ping unless one is already queued.
func (c *conn) ping() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.closed || c.pingQueued {
		return
	}
	c.pingQueued = true
	c.pushLocked(queued{ctl: ctlPing})
}

// closeWith queues last (if any) and a close frame with code, past the queue
// limit, and refuses further messages.
func (c *conn) closeWith(last []byte, code int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.closed {
		return
	}
	c.closing = true
	if last != nil {
		c.pushLocked(queued{Envelope: Envelope{Msg: last, Kind: KindEvent}})
	}
	c.pushLocked(queued{ctl: ctlClose, code: code})
}

func (c *conn) closeQueued() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// writeLoop drains the queue in batches and exits when it is empty. It is
// the only goroutine that writes data frames to the socket, and it holds no
// lock while it writes.
func (c *conn) writeLoop() {
	defer c.writer.Done()
	if err := c.writePartial(); err != nil {
		c.mu.Lock()
		c.closed = true
		c.wakeLocked()
		c.writing = false
		c.mu.Unlock()
		c.dropAfterWriteError(err)
		return
	}
	for {
		c.mu.Lock()
		if c.closed || len(c.q) == 0 {
			c.writing = false
			if len(c.q) == 0 && c.q != nil {
				putQueue(c.q)
				c.q = nil
			}
			c.mu.Unlock()
			return
		}
		batch := c.q
		c.q = nil
		c.pingQueued = false
		c.wakeLocked()
		c.mu.Unlock()

		n, err := c.writeBatch(batch)
		if err != nil {
			c.mu.Lock()
			c.closed = true
			c.wakeLocked()
			c.writing = false
			// Keep what was not written, in order, for a resume.
			c.q = append(keepable(batch[n:]), c.q...)
			c.mu.Unlock()
			putQueue(batch)
			if !errors.Is(err, errCloseSent) {
				c.dropAfterWriteError(err)
			}
			return
		}
		putQueue(batch)
	}
}

// dropAfterWriteError closes the socket after a failed write. A write that
// timed out means the client stopped reading: a slow consumer too.
func (c *conn) dropAfterWriteError(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.h.stats.slow.Add(1)
		c.h.log.Info("hub: dropping slow consumer", "peer", c.peer(), "reason", "write timeout")
	}
	_ = c.ws.Close()
}

// errCloseSent ends the writer after it wrote a close frame.
var errCloseSent = errors.New("hub: close sent")

// writeBatch writes the batch and returns how many items it wrote. On a
// socket from Upgrade, the batch leaves in one system call.
func (c *conn) writeBatch(batch []queued) (int, error) {
	deadline := time.Now().Add(c.h.cfg.WriteWait)
	if err := c.ws.SetWriteDeadline(deadline); err != nil {
		return 0, err
	}
	if c.sock == nil || len(batch) == 1 {
		return c.writeItems(batch, deadline)
	}
	c.sock.cork()
	n, err := c.writeItems(batch, deadline)
	if ferr := c.sock.uncork(); ferr != nil && (err == nil || errors.Is(err, errCloseSent)) {
		// The socket failed with the batch collected: keep all of it for a
		// resume (the client may then see some of it twice).
		return 0, ferr
	}
	return n, err
}

func (c *conn) writeItems(batch []queued, deadline time.Time) (int, error) {
	for i := range batch {
		it := &batch[i]
		var err error
		switch it.ctl {
		case ctlPing:
			err = c.ws.WriteControl(websocket.PingMessage, nil, deadline)
		case ctlClose:
			msg := websocket.FormatCloseMessage(it.code, closeText(it.code))
			_ = c.ws.WriteControl(websocket.CloseMessage, msg, deadline)
			// Wait a little for the client's close, then let the reader
			// time out.
			_ = c.ws.SetReadDeadline(time.Now().Add(min(closeGrace, c.h.cfg.WriteWait)))
			return i + 1, errCloseSent
		default:
			err = c.ws.WriteMessage(websocket.TextMessage, it.Msg)
			if err == nil && it.Kind == KindSignal {
				c.h.stats.signals.Add(1)
				c.h.stats.bytes.Add(uint64(len(it.Msg)))
			}
		}
		if err != nil {
			return i, err
		}
	}
	return len(batch), nil
}

func closeText(code int) string {
	switch code {
	case websocket.CloseServiceRestart:
		return "server restart"
	case websocket.CloseMessageTooBig:
		return "message too large"
	case websocket.ClosePolicyViolation:
		return "too many bad messages"
	}
	return ""
}

// keepable returns the messages worth keeping for a resume, in a new slice.
func keepable(items []queued) []queued {
	var out []queued
	for _, it := range items {
		if it.ctl == ctlNone && it.Kind != KindPresence {
			out = append(out, it)
		}
	}
	return out
}

// finish stops the connection: no more messages, the socket closed, the
// writer gone. It returns what was queued but not written.
func (c *conn) finish() []queued {
	c.mu.Lock()
	c.closed = true
	c.wakeLocked()
	c.mu.Unlock()
	_ = c.ws.Close()
	c.writer.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	left := keepable(c.q)
	if c.q != nil {
		putQueue(c.q)
		c.q = nil
	}
	return left
}

// wakeLocked wakes a send waiting for room in the queue. c.mu is held.
func (c *conn) wakeLocked() {
	if c.room != nil {
		close(c.room)
		c.room = nil
	}
}
