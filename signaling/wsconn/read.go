package wsconn

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// readLoop reads frames until the connection ends, or until it has read
// all it was given and the connection is quiet (idle true: the caller
// waits for more on a fresh goroutine, waitIdle). It returns the code of
// the client's close frame (0 if none came) and the error that ended it.
func (c *Conn[M]) readLoop(h Handler) (clientCode int, err error, idle bool) {
	rb, fs := &c.rb, &c.fs
	for {
		if c.dead.Load() {
			return 0, errKilledWhileReading, false
		}
		if rb.empty() {
			rb.release()
			if c.quiet() && !fs.inMessage {
				return 0, nil, true
			}
			if rb.bp, rb.w, err = c.src.await(); err != nil {
				return 0, err, false
			}
			rb.r = 0
		}
		f, err := rb.frame(c.src, fs, c.cfg.ReadLimit)
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				h.TooLarge(fs.size)
			}
			return 0, err, false
		}
		now := time.Now().UnixNano()
		c.gap = now - c.lastSeen.Swap(now)
		switch f.op {
		case opPing:
			c.queuePong(f.payload)
		case opPong:
		case opClose:
			code, err := parseClose(f.payload)
			return code, err, false
		default:
			if msg, text, ok := fs.add(f); ok {
				open, err := c.ready()
				if err != nil {
					return 0, err, false
				}
				if open {
					h.Message(text, msg)
				}
			}
		}
		rb.consume(f.size)
		fs.done()
	}
}

// quiet reports whether the reader, having handled all it read, should
// wait for the next bytes on a fresh goroutine (waitIdle): before the
// first frame, and when the last two came more than Config.IdleAfter
// apart. A busy connection keeps its goroutine, so that its messages do
// not each pay for a new one and for its stack's growth.
func (c *Conn[M]) quiet() bool { return c.gap > int64(c.cfg.IdleAfter) }

var errKilledWhileReading = errors.New("wsconn: killed")

// queuePong answers a ping (a later ping replaces an unanswered one, as RFC
// 6455 section 5.5.3 allows).
func (c *Conn[M]) queuePong(payload []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		return
	}
	c.pong = append(c.pong[:0], payload...)
	c.hasPong = true
	c.startWriterLocked()
}

// ready is called before the reader hands a message to the Handler. It
// reports false once the connection is closing: what the client still sends
// is read but not handled. While the send queue is over its Offer limits it
// waits first, so that a client that sends faster than it reads the answers
// is slowed by TCP; if the writer makes no room within WriteWait, the client
// is not reading at all.
func (c *Conn[M]) ready() (bool, error) {
	c.mu.Lock()
	if c.state != stateOpen || (len(c.q) < c.cfg.QueueLen && c.qBytes <= c.cfg.QueueBytes) {
		open := c.state == stateOpen
		c.mu.Unlock()
		return open, nil
	}
	if c.room == nil {
		c.room = make(chan struct{})
	}
	room := c.room
	c.mu.Unlock()
	t := time.NewTimer(c.cfg.WriteWait)
	defer t.Stop()
	select {
	case <-room:
		return c.ready()
	case <-t.C:
		c.Kill(ErrSlowConsumer)
		return false, ErrSlowConsumer
	}
}

// parseClose reads a close frame's payload as gorilla/websocket does: a
// code of the registry or 3000-4999, and valid UTF-8 text.
func parseClose(p []byte) (int, error) {
	if len(p) < 2 {
		return closeNoStatus, nil
	}
	code := int(binary.BigEndian.Uint16(p))
	if !validReceivedCode(code) {
		return 0, &ProtocolError{"bad close code " + strconv.Itoa(code)}
	}
	if !utf8.Valid(p[2:]) {
		return 0, &ProtocolError{"invalid utf8 payload in close frame"}
	}
	return code, nil
}

// validReceivedCode reports whether a close frame may carry code (RFC 6455
// section 7.4).
func validReceivedCode(code int) bool {
	switch code {
	case 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013:
		return true
	}
	return code >= 3000 && code <= 4999
}

// frame is one whole frame in the read buffer, unmasked.
type frame struct {
	fin     bool
	op      byte
	payload []byte // in the read buffer: valid until the buffer moves on
	size    int    // header and payload
}

// fragments is the reader's state across the frames of one message.
type fragments struct {
	inMessage bool   // a fragmented message has started and not finished
	op        byte   // its opcode
	buf       []byte // its payload so far
	size      int64  // bytes of the message so far, for ReadLimit
	ended     bool   // the last add completed a fragmented message
}

// add takes a data frame and returns a complete message when there is one.
func (fs *fragments) add(f frame) (msg []byte, text, ok bool) {
	if f.op != opContinuation && f.fin {
		return f.payload, f.op == opText, true // the common case: no copy
	}
	if f.op != opContinuation {
		fs.inMessage, fs.op = true, f.op
	}
	fs.buf = append(fs.buf, f.payload...)
	if !f.fin {
		return nil, false, false
	}
	fs.ended = true
	return fs.buf, fs.op == opText, true
}

// done forgets a message that add completed.
func (fs *fragments) done() {
	if fs.ended {
		*fs = fragments{}
	}
}

// readBuf holds the bytes read and not yet handled. It holds a buffer only
// while there are some.
type readBuf struct {
	bp   *[]byte
	r, w int // unread bytes are (*bp)[r:w]
}

func (rb *readBuf) empty() bool { return rb.bp == nil || rb.r == rb.w }

func (rb *readBuf) release() {
	if rb.bp != nil {
		putReadBuf(rb.bp)
		rb.bp, rb.r, rb.w = nil, 0, 0
	}
}

func (rb *readBuf) consume(n int) { rb.r += n }

// ensure makes n unread bytes available, reading (and blocking) as needed.
func (rb *readBuf) ensure(src source, n int) error {
	for rb.w-rb.r < n {
		buf := *rb.bp
		if rb.r+n > len(buf) {
			switch {
			case n <= len(buf):
				rb.w = copy(buf, buf[rb.r:rb.w])
				rb.r = 0
			case rb.r > 0 || rb.w == len(buf):
				// A frame larger than a pooled buffer gets one of its own,
				// grown (doubling) as its bytes come rather than sized by
				// its header, so that a header alone, or a trickle, holds
				// little; putReadBuf drops it when the reader is done.
				nb := make([]byte, min(n, 2*max(len(buf), rb.w-rb.r)))
				borrowed.Add(1)
				rb.w = copy(nb, buf[rb.r:rb.w])
				putReadBuf(rb.bp)
				rb.bp, rb.r, buf = &nb, 0, nb
			}
		}
		m, err := src.read(buf[rb.w:])
		rb.w += m
		if err != nil && rb.w-rb.r < n {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// frame returns the next whole frame, checked in the order gorilla checks
// it, so that the same bytes end a connection the same way.
func (rb *readBuf) frame(src source, fs *fragments, limit int64) (frame, error) {
	if err := rb.ensure(src, 2); err != nil {
		return frame{}, err
	}
	b := (*rb.bp)[rb.r:rb.w]
	f := frame{fin: b[0]&0x80 != 0, op: b[0] & 0x0f}
	length := int64(b[1] & 0x7f)
	if err := checkHeader(b[0], b[1], fs); err != nil {
		return frame{}, err
	}
	hlen := 2
	switch length {
	case 126:
		hlen += 2
	case 127:
		hlen += 8
	}
	if err := rb.ensure(src, hlen); err != nil {
		return frame{}, err
	}
	b = (*rb.bp)[rb.r:rb.w]
	switch length {
	case 126:
		length = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		v := binary.BigEndian.Uint64(b[2:])
		if v > math.MaxInt64 {
			fs.size = math.MaxInt64
			return frame{}, ErrTooLarge
		}
		length = int64(v)
	}
	if err := rb.ensure(src, hlen+4); err != nil {
		return frame{}, err
	}
	var key [4]byte
	copy(key[:], (*rb.bp)[rb.r+hlen:])
	hlen += 4
	if f.op < opClose {
		if f.op != opContinuation {
			fs.size = 0 // a new message
		}
		fs.size += length
		if fs.size < 0 || fs.size > limit {
			return frame{}, ErrTooLarge
		}
	}
	f.size = hlen + int(length)
	if err := rb.ensure(src, f.size); err != nil {
		return frame{}, err
	}
	f.payload = (*rb.bp)[rb.r+hlen : rb.r+f.size]
	mask(key, f.payload)
	return f, nil
}

// checkHeader checks a frame's first two bytes against RFC 6455 and the
// message in progress; it updates whether one is.
func checkHeader(b0, b1 byte, fs *fragments) error {
	var errs []string
	if b0&0x40 != 0 {
		errs = append(errs, "RSV1 set") // no extension is negotiated
	}
	if b0&0x20 != 0 {
		errs = append(errs, "RSV2 set")
	}
	if b0&0x10 != 0 {
		errs = append(errs, "RSV3 set")
	}
	fin, op := b0&0x80 != 0, b0&0x0f
	switch op {
	case opClose, opPing, opPong:
		if b1&0x7f > maxControlPayload {
			errs = append(errs, "len > 125 for control")
		}
		if !fin {
			errs = append(errs, "FIN not set on control")
		}
	case opText, opBinary:
		if fs.inMessage {
			errs = append(errs, "data before FIN")
		}
		fs.inMessage = !fin
	case opContinuation:
		if !fs.inMessage {
			errs = append(errs, "continuation after FIN")
		}
		fs.inMessage = !fin
	default:
		errs = append(errs, "bad opcode "+strconv.Itoa(int(op)))
	}
	if b1&0x80 == 0 {
		errs = append(errs, "bad MASK")
	}
	if len(errs) > 0 {
		return &ProtocolError{joinReasons(errs)}
	}
	return nil
}

func joinReasons(errs []string) string {
	s := errs[0]
	for _, e := range errs[1:] {
		s += ", " + e
	}
	return s
}

// mask XORs b with key, eight bytes at a time.
func mask(key [4]byte, b []byte) {
	k4 := binary.LittleEndian.Uint32(key[:])
	k8 := uint64(k4)<<32 | uint64(k4)
	i := 0
	for ; i+8 <= len(b); i += 8 {
		v := binary.LittleEndian.Uint64(b[i:])
		binary.LittleEndian.PutUint64(b[i:], v^k8)
	}
	for ; i < len(b); i++ {
		b[i] ^= key[i&3]
	}
}
