package hub

import (
	"encoding/binary"
	"errors"
	"os"
	"syscall"
	"time"

	"github.com/khadga/khadga/internal/rawio"
)

// Direct writes. When a signal arrives for a connection with nothing queued
// and no writer running, the sender's reader writes the frame itself with
// one non-blocking system call, as an event loop would, instead of starting
// a writer goroutine: that saves a goroutine start, its stack growth and a
// wake-up per signal, which at moderate rates is most of a signal's cost. If
// the socket takes only part of the frame (its buffer is full), the rest
// goes to a writer goroutine, which waits for it with the usual deadline;
// so a slow reader still never blocks the sender.

// maxDirect is the largest message written directly; larger ones take the
// queue, whose writer frames them with gorilla.
const maxDirect = sockBufSize - maxFrameHeader

// maxFrameHeader is the longest header of an unmasked server frame.
const maxFrameHeader = 10

// partialWrite is the unwritten tail of a direct write, which the writer
// goroutine writes before anything queued.
type partialWrite struct {
	rest []byte
	buf  *[]byte // pooled buffer rest points into
	it   queued  // the message, kept for a resume if the socket fails
}

// claimDirect reports whether the caller may write a message of n bytes
// straight to the socket. It then holds the writer role: until writeDirect
// returns, other messages queue behind it and no writer starts. c.mu and
// the session lock may be held; the write itself must happen after they
// are released.
func (c *conn) claimDirect(n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sock == nil || n > maxDirect || c.writing || c.closing || c.closed || len(c.q) > 0 {
		return false
	}
	c.writing = true
	c.writer.Add(1)
	return true
}

// writeDirect writes it after claimDirect, and hands the writer role on to
// a writer goroutine if anything is left to write. it.Msg may be borrowed
// (Envelope.Borrowed): it is copied before anything keeps it.
func (c *conn) writeDirect(it queued) {
	bp := sockPool.Get().(*[]byte)
	frame := appendTextFrame((*bp)[:0], it.Msg)
	n, err := c.sock.tryWrite(frame)
	if err != nil {
		sockPool.Put(bp)
		c.failWrite(it, n > 0)
		return
	}
	c.mu.Lock()
	if n < len(frame) {
		c.h.stats.partials.Add(1)
		it.Envelope = it.owned() // kept past Deliver, for a resume
		c.partial = &partialWrite{rest: frame[n:], buf: bp, it: it}
	} else {
		sockPool.Put(bp)
		c.countSent(it)
	}
	if c.partial == nil && (len(c.q) == 0 || c.closed) {
		c.writing = false
		c.mu.Unlock()
		c.writer.Done()
		return
	}
	c.mu.Unlock()
	go c.writeLoop() // inherits the writer role and its count
}

// failWrite ends the connection after a failed direct write, keeping it
// for a resume. torn says part of its frame was sent: the client's stream
// is then broken, which closing it makes plain.
func (c *conn) failWrite(it queued, torn bool) {
	c.mu.Lock()
	c.closed = true
	c.wakeLocked()
	c.writing = false
	it.Envelope = it.owned()
	c.q = append(keepable([]queued{it}), c.q...)
	c.mu.Unlock()
	c.writer.Done()
	_ = c.ws.Close()
	if torn {
		c.h.log.Debug("hub: socket failed mid-frame", "peer", c.peer())
	}
}

// writePartial writes the tail of a direct write, waiting for the socket
// up to the write deadline. It runs on the writer goroutine.
func (c *conn) writePartial() error {
	c.mu.Lock()
	p := c.partial
	c.partial = nil
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	defer sockPool.Put(p.buf)
	err := c.sock.SetWriteDeadline(time.Now().Add(c.h.cfg.WriteWait))
	if err == nil {
		_, err = c.sock.Write(p.rest)
	}
	if err != nil {
		c.mu.Lock()
		c.q = append(keepable([]queued{p.it}), c.q...)
		c.mu.Unlock()
		return err
	}
	c.countSent(p.it)
	return nil
}

func (c *conn) countSent(it queued) {
	if it.Kind == KindSignal {
		c.h.stats.signals.Add(1)
		c.h.stats.bytes.Add(uint64(len(it.Msg)))
	}
}

// appendTextFrame appends msg as one unmasked, final text frame (RFC 6455
// section 5.2), as gorilla would write it on a connection without
// compression.
func appendTextFrame(b, msg []byte) []byte {
	b = append(b, 0x81) // FIN, text
	switch n := len(msg); {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, msg...)
}

// tryWrite writes b without waiting and returns how much of it the socket
// took, possibly none. It never waits for room in the socket buffer, so it
// may run on another connection's reader.
func (c *sockConn) tryWrite(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.corked {
		return 0, nil // a writer is batching (cannot happen with the role held)
	}
	var n int
	var werr error
	err := c.rc.Write(func(fd uintptr) bool {
		n, werr = rawio.IO(syscall.SYS_WRITE, fd, b)
		return true // never wait here
	})
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		// A deadline set for an earlier blocking write (gorilla sets one
		// for control frames) has passed: let the writer goroutine, which
		// sets a fresh one, write the frame.
		return 0, nil
	case err != nil:
		return 0, err
	case werr == syscall.EAGAIN:
		return 0, nil
	case werr != nil:
		return 0, werr
	}
	return n, nil
}
