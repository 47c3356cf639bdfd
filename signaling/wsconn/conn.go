package wsconn

import (
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/khadga/khadga/internal/rawsock"
)

// Message is what a send queue holds: the encoded text of one message.
type Message interface {
	// Payload is the text the message is sent as. It must not change while
	// the message is queued.
	Payload() []byte
	// Release is called by the writer once the message is written (or
	// its write failed), after which the connection does not touch it, so
	// that its buffer can be used again. Messages that are dropped or
	// handed back (Result.Unsent, Takeover) are not released.
	Release()
}

// Handler receives what the reader reads. Its methods run on the reader
// goroutine, one at a time, and never while the connection is closing.
type Handler interface {
	// Message is one complete data message, text or binary. b is valid only
	// until Message returns.
	Message(text bool, b []byte)
	// TooLarge says a message of at least size bytes is over
	// Config.ReadLimit. The connection closes with 1009 once it returns;
	// what the handler Sends first is written before the close frame.
	TooLarge(size int64)
}

// Errors of Send, Offer and Result.Err.
var (
	// ErrClosing means the connection takes no more messages: a close
	// frame is queued, or the connection is gone.
	ErrClosing = errors.New("wsconn: connection closing")
	// ErrQueueFull is Offer's refusal: the queue is at its Offer limits.
	// Nothing else changed.
	ErrQueueFull = errors.New("wsconn: send queue full")
	// ErrSlowConsumer means the client stopped reading: Send found the
	// queue at twice its limits, or a write made no progress for
	// Config.WriteWait, or the reader held back for that long. The
	// connection has been killed.
	ErrSlowConsumer = errors.New("wsconn: slow consumer")
)

// Config bounds a connection. Zero fields take the defaults named on them.
// One Config is shared by every connection of a server.
type Config struct {
	// ReadLimit is the largest message accepted (default 64 KiB).
	ReadLimit int64
	// WriteWait bounds each socket write (default 10s).
	WriteWait time.Duration
	// CloseGrace is how long the reader waits for the client's close frame
	// after the server's (default 2s).
	CloseGrace time.Duration
	// QueueLen and QueueBytes are the send queue's Offer limits (defaults
	// 256 messages, 1 MiB); Send admits up to twice as much.
	QueueLen   int
	QueueBytes int
	// IdleAfter is the gap between a connection's last two frames past
	// which the reader, once it has handled them, waits for more on a
	// fresh goroutine with a small stack (default 1s; see the package doc).
	IdleAfter time.Duration

	// portable makes plain TCP sockets wait like TLS ones do (smallSource),
	// so that tests run the portable path on Unix too.
	portable bool
}

// Defaults of Config.
const (
	DefaultReadLimit  = 64 << 10
	DefaultWriteWait  = 10 * time.Second
	DefaultCloseGrace = 2 * time.Second
	DefaultQueueLen   = 256
	DefaultQueueBytes = 1 << 20
	DefaultIdleAfter  = time.Second
)

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.ReadLimit <= 0 {
		c.ReadLimit = DefaultReadLimit
	}
	if c.WriteWait <= 0 {
		c.WriteWait = DefaultWriteWait
	}
	if c.CloseGrace <= 0 {
		c.CloseGrace = DefaultCloseGrace
	}
	if c.QueueLen <= 0 {
		c.QueueLen = DefaultQueueLen
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = DefaultQueueBytes
	}
	if c.IdleAfter <= 0 {
		c.IdleAfter = DefaultIdleAfter
	}
	return c
}

// state is where a connection is in its life.
type state uint8

const (
	stateOpen    state = iota
	stateClosing       // a close frame is queued or sent: no more messages
	stateDead          // killed or finished: nothing more is written
)

// Conn is one server-side WebSocket connection. Build it with New, run its
// reader with Serve; see the package doc for who may call what.
type Conn[M Message] struct {
	nc  net.Conn
	w   net.Conn // nc, or nc writing with raw system calls (rawsock)
	cfg *Config
	src source

	lastSeen atomic.Int64 // unix nanoseconds of the last frame read
	dead     atomic.Bool  // state == stateDead, for the reader's per-frame check

	// The reader's own state, here rather than in its locals because the
	// reader changes goroutines (waitIdle).
	rb  readBuf
	fs  fragments
	gap int64 // nanoseconds between the last two frames read (quiet)

	// mu guards the fields below. It is a leaf: nothing is locked under it.
	mu           sync.Mutex
	state        state
	q            []M
	qBytes       int
	writing      bool          // a writer goroutine runs (or lingers)
	wake         chan struct{} // set while the writer lingers; a send wakes it
	writerStarts int           // how many writers were started, for tests
	ping         bool          // a ping is waiting to be written
	pong         []byte        // the payload of a pong waiting to be written
	hasPong      bool
	close        []byte // the payload of a close frame waiting to be written
	closeSent    bool
	closeCode    int           // the code of the close the server started, 0 if none
	room         chan struct{} // closed when the writer empties the queue; made by a holding-back reader
	cause        error         // why the connection was killed
	kept         []M           // returned in Result.Unsent: a failed batch's messages not written whole, then the queue when the client's close came
	writer       sync.WaitGroup
}

// New wraps an upgraded connection. cfg must have been through
// WithDefaults; it is shared, not copied. Nothing runs until Serve.
func New[M Message](nc net.Conn, cfg *Config) *Conn[M] {
	c := &Conn[M]{nc: nc, w: nc, cfg: cfg, src: newSource(nc, cfg.portable), gap: math.MaxInt64}
	if !cfg.portable {
		c.w = rawsock.Wrap(nc)
	}
	c.lastSeen.Store(time.Now().UnixNano())
	return c
}

// NetConn is the underlying connection (for its addresses).
func (c *Conn[M]) NetConn() net.Conn { return c.nc }

// LastSeen is when the last frame (of any kind) arrived.
func (c *Conn[M]) LastSeen() time.Time { return time.Unix(0, c.lastSeen.Load()) }

// Offer queues m unless the queue is at its limits (ErrQueueFull, and
// nothing changes) or the connection is closing (ErrClosing).
func (c *Conn[M]) Offer(m M) error { return c.enqueue(m, 1) }

// Send queues m. Over twice the queue's limits the client is taken for a
// slow consumer: the connection is killed and Send returns
// ErrSlowConsumer. It returns ErrClosing once the connection is closing.
func (c *Conn[M]) Send(m M) error { return c.enqueue(m, 2) }

func (c *Conn[M]) enqueue(m M, scale int) error {
	n := len(m.Payload())
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return ErrClosing
	}
	if len(c.q) > 0 && (len(c.q) >= scale*c.cfg.QueueLen || c.qBytes+n > scale*c.cfg.QueueBytes) {
		c.mu.Unlock()
		if scale == 1 {
			return ErrQueueFull
		}
		c.Kill(ErrSlowConsumer)
		return ErrSlowConsumer
	}
	c.pushLocked(m, n)
	c.mu.Unlock()
	return nil
}

// SendAll queues ms in order past the queue's limits: it is for moving a
// resumed session's messages onto its new connection, whose amount the
// old queue already bounded. It returns ErrClosing, queuing nothing, once
// the connection is closing.
func (c *Conn[M]) SendAll(ms []M) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		return ErrClosing
	}
	for _, m := range ms {
		c.pushLocked(m, len(m.Payload()))
	}
	return nil
}

func (c *Conn[M]) pushLocked(m M, n int) {
	if c.q == nil {
		c.q = getQueue[M]()
	}
	c.q = append(c.q, m)
	c.qBytes += n
	c.startWriterLocked()
}

// Ping queues a ping, unless one is waiting already.
func (c *Conn[M]) Ping() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen || c.ping {
		return
	}
	c.ping = true
	c.startWriterLocked()
}

// Close starts the closing handshake: a close frame with code and text is
// written after what is queued, no more messages are taken, and the reader
// waits Config.CloseGrace for the client's answer. It does nothing if the
// connection is already closing.
func (c *Conn[M]) Close(code int, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked(code, text)
}

func (c *Conn[M]) closeLocked(code int, text string) {
	if c.state != stateOpen {
		return
	}
	c.state = stateClosing
	c.closeCode = code
	c.close = formatClose(code, text)
	c.startWriterLocked()
}

// Closing reports whether the server started closing the connection, and
// with which code.
func (c *Conn[M]) Closing() (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode, c.closeCode != 0
}

// Kill drops the connection now: nothing more is written, and the reader
// and writer wake and end. err says why (Result.Err). Kill never blocks.
func (c *Conn[M]) Kill(err error) { c.kill(err, false) }

// Takeover kills the connection like Kill and takes the messages still in
// its queue, which Serve will then not return: a resumed session moves them
// onto its new connection. What the writer had already taken is written
// to the old socket, or, if that write fails, returned in Result.Unsent
// (its messages not written whole).
func (c *Conn[M]) Takeover(err error) []M { return c.kill(err, true) }

func (c *Conn[M]) kill(err error, take bool) (taken []M) {
	c.mu.Lock()
	if take {
		taken = append(c.kept, c.q...)
		c.kept = nil
		c.dropQueueLocked()
	}
	if c.state == stateDead {
		c.mu.Unlock()
		return taken
	}
	c.state = stateDead
	c.dead.Store(true)
	c.cause = err
	c.wakeRoomLocked()
	c.wakeWriterLocked()
	writing := c.writing
	c.mu.Unlock()
	// The wake-ups: a deadline in the past makes a blocked read or write
	// return at once. Whoever sets a deadline later checks dead after.
	_ = c.nc.SetReadDeadline(longAgo)
	if writing {
		_ = c.nc.SetWriteDeadline(longAgo)
	}
	return taken
}

// longAgo is a deadline that has passed.
var longAgo = time.Unix(1, 0)

func (c *Conn[M]) dropQueueLocked() {
	if c.q != nil {
		putQueue(c.q)
	}
	c.q, c.qBytes = nil, 0
}

func (c *Conn[M]) wakeRoomLocked() {
	if c.room != nil {
		close(c.room)
		c.room = nil
	}
}

// Result is how a connection ended, returned by Serve.
type Result[M Message] struct {
	// Err is why the reader stopped: nil after a completed closing
	// handshake, the Kill error, a *ProtocolError, ErrTooLarge, or the
	// socket's error.
	Err error
	// ClientCode is the code of the client's close frame, 0 if none came
	// (1005 if it came without a code).
	ClientCode int
	// ServerCode is the code of the close the server started, 0 if none.
	ServerCode int
	// Unsent are the messages queued but not written whole, in order:
	// those the writer had taken when its write failed first.
	Unsent []M
}

// ProtocolError is a frame that breaks RFC 6455; the connection was closed
// with 1002.
type ProtocolError struct{ Reason string }

func (e *ProtocolError) Error() string { return "wsconn: protocol error: " + e.Reason }

// ErrTooLarge means a message was over Config.ReadLimit; the connection was
// closed with 1009.
var ErrTooLarge = errors.New("wsconn: message too large")

// Start runs the connection's reader, from a goroutine of its own, until
// the connection ends; then it closes the socket and calls done with how
// it ended, on the reader's goroutine. Call Start or Serve once.
func (c *Conn[M]) Start(h Handler, done func(Result[M])) {
	go c.waitIdle(h, done) // nothing has been read: the connection is quiet
}

// Serve is Start on the calling goroutine, which returns how the
// connection ended once it has. (While the connection is idle the reader
// is another goroutine, and the caller's waits for it.)
func (c *Conn[M]) Serve(h Handler) Result[M] {
	ended := make(chan Result[M], 1)
	c.serve(h, func(r Result[M]) { ended <- r })
	return <-ended
}

// serve reads until the connection ends or goes quiet: then the reader
// moves to a fresh goroutine, waitIdle, and this one returns.
func (c *Conn[M]) serve(h Handler, done func(Result[M])) {
	clientCode, err, idle := c.readLoop(h)
	if idle {
		go c.waitIdle(h, done)
		return
	}
	done(c.end(clientCode, err))
}

// waitIdle is the reader of a quiet connection. Its goroutine is fresh, and
// holds nothing but the wait for bytes, so its stack stays at the
// runtime's smallest (2 KiB): a goroutine that has handled messages keeps
// the larger stack they needed (4 KiB or more) for as long as it lives,
// and an idle connection would hold that for nothing. Once bytes come it
// goes on as the reader, on this goroutine.
func (c *Conn[M]) waitIdle(h Handler, done func(Result[M])) {
	waiting.Add(1)
	bp, n, err := c.src.await()
	waiting.Add(-1)
	if err != nil {
		done(c.end(0, err))
		return
	}
	c.rb.bp, c.rb.r, c.rb.w = bp, 0, n
	c.serve(h, done)
}

// waiting counts the readers that wait in waitIdle, for tests.
var waiting atomic.Int64

// end finishes the connection after its reader stopped: it answers or
// starts the closing handshake, lets the writer finish, closes the socket,
// and returns how the connection ended.
func (c *Conn[M]) end(clientCode int, err error) Result[M] {
	c.rb.release()
	switch {
	case clientCode != 0:
		c.answerClose(clientCode)
	case errors.Is(err, ErrTooLarge):
		c.Close(1009, "message too large")
	case isProtocol(err):
		c.Close(1002, err.(*ProtocolError).Reason)
	default:
		// The socket failed, the close grace ran out, or someone killed the
		// connection: stop a writer that may be stuck on a dead client.
		c.Kill(err)
	}
	// Let the writer finish what the cases above queued (each write is
	// bounded by WriteWait, and a Kill wakes it), then stop everything.
	c.writer.Wait()
	c.mu.Lock()
	c.state = stateDead
	c.dead.Store(true)
	if c.cause != nil {
		err = c.cause // if killed by someone else, say why, not "i/o timeout"
	}
	res := Result[M]{Err: err, ClientCode: clientCode, ServerCode: c.closeCode}
	res.Unsent = append(c.kept, c.q...)
	c.kept = nil
	c.dropQueueLocked()
	c.mu.Unlock()
	c.writer.Wait() // one started between the two waits found the connection dead
	_ = closeSocket(c.nc)
	if clientCode != 0 {
		res.Err = nil // a closing handshake, whoever started it
	}
	return res
}

// answerClose answers the client's close frame with its code, unless the
// server's close went first. Queued messages are not written: the client
// is leaving (a browser drops every message that arrives after its
// close()), and a resumed session gets them from Result.Unsent, or their
// senders are told. Only a batch the writer is already writing goes out.
func (c *Conn[M]) answerClose(code int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		return
	}
	c.state = stateClosing
	c.kept = append(c.kept, c.q...) // after what a failed write put back
	c.dropQueueLocked()
	if code == closeNoStatus {
		c.close = []byte{}
	} else {
		c.close = formatClose(code, "")
	}
	c.startWriterLocked()
}

// closeSocket closes the transport under a TLS connection directly: the
// WebSocket closing handshake has already ended the session, and a TLS
// close_notify would be one more write that can block for seconds.
func closeSocket(nc net.Conn) error {
	if u, ok := nc.(interface{ NetConn() net.Conn }); ok {
		return u.NetConn().Close()
	}
	return nc.Close()
}

func isProtocol(err error) bool {
	var pe *ProtocolError
	return errors.As(err, &pe)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// closeNoStatus is the code of a close frame without a payload (RFC 6455
// section 7.1.5).
const closeNoStatus = 1005

// formatClose builds a close frame's payload: the code, then text cut to
// fit a control frame.
func formatClose(code int, text string) []byte {
	if len(text) > maxControlPayload-2 {
		text = text[:maxControlPayload-2]
	}
	b := make([]byte, 2, 2+len(text))
	b[0], b[1] = byte(code>>8), byte(code)
	return append(b, text...)
}

func (c *Conn[M]) String() string {
	return fmt.Sprintf("wsconn %s", c.nc.RemoteAddr())
}
