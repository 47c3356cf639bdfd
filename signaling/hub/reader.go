package hub

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/proto"
)

// readPool recycles read buffers: an idle connection holds none, and a busy
// one borrows a buffer only while it decodes a message.
var readPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// handoffEvery spaces a connection's hand-offs: a busy connection keeps its
// reader, whose stack has grown, instead of starting a goroutine per message
// (a start, its stack growth and usually a wake-up of another thread); one
// that goes quiet hands off at its next message, such as a heartbeat.
const handoffEvery = int64(time.Second)

// errHandoff ends a reader that handed its role to a fresh goroutine.
var errHandoff = errors.New("hub: reader handed off")

// readLoop reads messages until the socket fails or closes. With handoff
// (Start on a socket from Upgrade), when a message leaves nothing more to
// read, it starts a fresh reader and returns errHandoff: handling messages
// grows a goroutine's stack to 8 KiB, and the runtime never shrinks a stack
// below 4 KiB, while a fresh goroutine waits for the next frame in 2 KiB.
func (c *conn) readLoop(handoff bool) error {
	limit := c.h.cfg.ReadLimit
	for {
		if c.sock != nil && c.readFrames(limit, handoff) {
			return errHandoff
		}
		mt, r, err := c.ws.NextReader()
		if err != nil {
			return err
		}
		now := time.Now()
		c.lastSeen.Store(now.UnixNano())
		if c.closeQueued() {
			continue // draining until the client answers our close
		}
		bp := readPool.Get().(*[]byte)
		b, tooBig, err := readLimited(r, (*bp)[:0], limit)
		if err != nil {
			readPool.Put(bp)
			return err
		}
		switch {
		case mt != websocket.TextMessage:
			c.protocolError("", proto.CodeBadMessage, "binary frames are not accepted; send one JSON object per text frame", now)
		case tooBig:
			c.h.stats.countError(proto.CodeTooLarge)
			c.closeWith(errorMsg("", proto.CodeTooLarge, fmt.Sprintf("message is over the %d byte limit", limit)), websocket.CloseMessageTooBig)
		default:
			c.handle(b, now)
		}
		if cap(b) <= 4*int(proto.MaxMessageSize) {
			*bp = b[:0]
			readPool.Put(bp)
		}
		if handoff && c.sock != nil && c.handOff(now) {
			return errHandoff
		}
	}
}

// handOff starts a fresh reader and reports true if nothing is waiting to
// be read and the last hand-off was long enough ago.
func (c *conn) handOff(now time.Time) bool {
	if !c.sock.idle() || now.UnixNano()-c.handedOff < handoffEvery {
		return false
	}
	c.handedOff = now.UnixNano()
	// Its wg count is added while ours is held, so Shutdown's Wait cannot
	// miss it.
	c.h.wg.Add(1)
	go c.serve()
	return true
}

// readFrames reads the socket and handles whole text frames as they come,
// without gorilla's per-message machinery, until something else arrives
// (gorilla reads that), the socket fails (the error waits in c.sock.rerr
// for gorilla to meet) or the reader hands off (it returns true).
//
// It all happens inside one RawConn.Read, which saves a system call per
// message: when a read drained the socket (it returned less than the
// buffer), the next wait goes straight to the runtime's poller instead of
// first trying a read that would return EAGAIN. That is safe only within
// one RawConn.Read, whose start clears the socket's readiness: inside it,
// data that arrives after the read marks the socket ready, and the wait
// returns at once.
func (c *conn) readFrames(limit int64, handoff bool) bool {
	s := c.sock
	if s.rerr != nil {
		return false
	}
	drained, handedOff := false, false
	var n int
	var rerr error
	err := s.rc.Read(func(fd uintptr) bool {
		for {
			if s.rbuf == nil {
				if drained {
					drained = false
					return false // wait for data; no read to learn there is none
				}
				if n, rerr = s.readOnce(fd); rerr == syscall.EAGAIN {
					return false
				}
				if rerr != nil || n == 0 {
					return true
				}
				drained = n < sockBufSize
			}
			var now time.Time
			for b, size, ok := s.textFrame(limit); ok; b, size, ok = s.textFrame(limit) {
				now = time.Now()
				c.lastSeen.Store(now.UnixNano())
				if !c.closeQueued() {
					c.handle(b, now)
				}
				s.consume(size)
			}
			if s.rbuf != nil {
				rerr, n = nil, 1
				return true // a frame for gorilla
			}
			if handoff && !now.IsZero() && c.handOff(now) {
				handedOff = true
				return true
			}
		}
	})
	if handedOff {
		return true
	}
	s.rerr = s.readErr(err, rerr, n)
	return false
}

// readLimited reads r into b, up to limit bytes. It reports tooBig, without
// reading the rest, if r holds more.
func readLimited(r io.Reader, b []byte, limit int64) ([]byte, bool, error) {
	for {
		if int64(len(b)) > limit {
			return b, true, nil
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if errors.Is(err, io.EOF) {
			return b, int64(len(b)) > limit, nil
		}
		if err != nil {
			return b, false, err
		}
	}
}

// handle decodes, checks and runs one message. b is reused after it
// returns, and m.Data may point into it: nothing may keep m.Data.
func (c *conn) handle(b []byte, now time.Time) {
	var msg proto.Message
	m := &msg
	if err := decode(b, int(c.h.cfg.ReadLimit), m); err != nil {
		var pe *proto.ProtocolError
		if errors.As(err, &pe) {
			c.protocolError(pe.ID, pe.Code, pe.Message, now)
		} else {
			c.protocolError("", proto.CodeBadMessage, "invalid message", now)
		}
		return
	}
	if !c.allow(now) {
		c.protocolError(m.ID, proto.CodeRateLimited, fmt.Sprintf("over %g messages per second", c.h.cfg.MessageRate), now)
		return
	}
	if err := m.Validate(); err != nil {
		var pe *proto.ProtocolError
		if errors.As(err, &pe) {
			c.protocolError(m.ID, pe.Code, pe.Message, now)
		} else {
			c.protocolError(m.ID, proto.CodeBadMessage, "invalid message", now)
		}
		return
	}
	switch m.Type {
	case proto.TypeSignal:
		c.h.forward(c, m)
	case proto.TypeJoin:
		c.h.join(c, m)
	case proto.TypeLeave:
		c.h.leave(c, m)
	case proto.TypePing:
		c.send(refMsg(proto.TypePong, m.ID))
	}
}

// allow takes a token from the message-rate bucket.
func (c *conn) allow(now time.Time) bool {
	return take(&c.tokens, &c.tokensAt, now, c.h.cfg.MessageRate, float64(c.h.cfg.MessageBurst))
}

// take is a token bucket: it refills at rate per second up to burst.
func take(tokens *float64, at *int64, now time.Time, rate, burst float64) bool {
	n := now.UnixNano()
	if elapsed := n - *at; elapsed > 0 {
		*tokens = min(burst, *tokens+float64(elapsed)/1e9*rate)
		*at = n
	}
	if *tokens < 1 {
		return false
	}
	*tokens--
	return true
}

// protocolError answers a bad message. Each one spends the connection's
// abuse allowance; when that runs out the connection is closed with 1008.
func (c *conn) protocolError(ref string, code proto.Code, text string, now time.Time) {
	c.h.stats.countError(code)
	msg := errorMsg(ref, code, text)
	if !take(&c.abuse, &c.abuseAt, now, 1, float64(c.h.cfg.AbuseLimit)) {
		c.h.log.Info("hub: closing abusive connection", "peer", c.peer(), "code", string(code))
		c.closeWith(msg, websocket.ClosePolicyViolation)
		return
	}
	c.send(msg)
}

// replyError answers a well-formed request that cannot be done.
func (c *conn) replyError(ref string, code proto.Code, format string, args ...any) {
	c.h.stats.countError(code)
	c.send(errorMsg(ref, code, fmt.Sprintf(format, args...)))
}

func errorMsg(ref string, code proto.Code, text string) []byte {
	b, _ := proto.NewError(ref, code, "%s", text).Encode()
	return b
}

// refMsg encodes a data-less message answering ref (ack, pong).
func refMsg(typ, ref string) []byte {
	m := proto.Message{Type: typ, Ref: ref}
	b, _ := m.Encode()
	return b
}
