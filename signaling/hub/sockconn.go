package hub

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/internal/rawio"
)

// Upgrade is u.Upgrade with a socket that saves system calls and memory:
// its reads fill a pooled buffer only while data is waiting, so an idle
// connection holds none and a busy one brings in many frames per read; and
// the hub's writer corks it, so that a batch of queued messages leaves in
// one write. Use it with an Upgrader from NewUpgrader. Sockets that are not
// plain file descriptors (TLS, for one) are left as they are.
func Upgrade(u *websocket.Upgrader, w http.ResponseWriter, r *http.Request, responseHeader http.Header) (*websocket.Conn, error) {
	return u.Upgrade(hijacker{w}, r, responseHeader)
}

// hijacker wraps the socket that net/http hands over.
type hijacker struct{ http.ResponseWriter }

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c, brw, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c, brw, nil
	}
	return &sockConn{Conn: c, rc: rc}, brw, nil
}

// sockBufSize is the size of the pooled read and write buffers.
const sockBufSize = 16 << 10

var sockPool = sync.Pool{New: func() any { b := make([]byte, sockBufSize); return &b }}

// sockConn is a net.Conn with a read buffer borrowed only while it holds
// unread bytes, and a write buffer used only while corked.
type sockConn struct {
	net.Conn
	rc syscall.RawConn

	// Read state, used only by the connection's reader (one goroutine at a
	// time). Reads hand out at most one WebSocket frame at a time, so that
	// gorilla's buffer never holds bytes past the frame it is reading: when
	// a message has been read and rbuf is empty, nothing at all is waiting,
	// which lets a reader wait for the next frame in a shallow call (idle,
	// fill) instead of deep inside gorilla.
	rbuf       *[]byte
	roff, rend int
	left       int64    // bytes of the current frame's payload still to hand out
	hdr        [14]byte // the current frame's header, as handed out so far
	hdrN       int
	rerr       error // a failed wait's error, for the next Read

	// wmu orders writes to this one socket (netFD has such a lock too); it
	// is held during a write, like netFD's, and never with a hub lock.
	wmu    sync.Mutex
	corked bool
	wbuf   []byte // pooled while corked and non-empty
	wpool  *[]byte
}

func (c *sockConn) Read(p []byte) (int, error) {
	if c.rbuf == nil {
		if c.rerr != nil {
			return 0, c.rerr
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	avail := (*c.rbuf)[c.roff:c.rend]
	var n int
	if c.left > 0 {
		n = int(min(int64(len(p)), int64(len(avail)), c.left))
		copy(p, avail[:n])
		c.left -= int64(n)
	} else {
		// A header: hand out only what it still lacks.
		n = min(len(p), len(avail), c.hdrLen()-c.hdrN)
		copy(p, avail[:n])
		copy(c.hdr[c.hdrN:], avail[:n])
		c.hdrN += n
		if c.hdrN == c.hdrLen() {
			c.left = c.payloadLen()
			c.hdrN = 0
		}
	}
	c.roff += n
	if c.roff == c.rend {
		sockPool.Put(c.rbuf)
		c.rbuf = nil
	}
	return n, nil
}

// idle reports whether nothing is waiting to be read: no buffered bytes
// here, and (since reads stop at frame ends) none in gorilla's buffer once
// a message has been read to its end.
func (c *sockConn) idle() bool {
	return c.rbuf == nil && c.left == 0 && c.hdrN == 0
}

// skipPongs consumes complete pong frames waiting at a frame boundary and
// reports whether it consumed any. The hub's keepalive pings silent clients,
// and their pongs would otherwise wake a shallow waiting reader into gorilla,
// where it would wait again for a data frame on a grown stack. gorilla would
// only have passed them to the pong handler, which marks the connection
// alive; the caller does that.
func (c *sockConn) skipPongs() bool {
	skipped := false
	for c.rbuf != nil && c.left == 0 && c.hdrN == 0 {
		b := (*c.rbuf)[c.roff:c.rend]
		// FIN and opcode 10, masked (as every client frame is), <= 125 bytes.
		if len(b) < 6 || b[0] != 0x8a || b[1]&0x80 == 0 || int(b[1]&0x7f) > 125 || len(b) < 6+int(b[1]&0x7f) {
			return skipped
		}
		c.roff += 6 + int(b[1]&0x7f)
		skipped = true
		if c.roff == c.rend {
			sockPool.Put(c.rbuf)
			c.rbuf = nil
		}
	}
	return skipped
}

// textFrame returns the payload of a whole message waiting at a frame
// boundary: one complete, final, masked text frame with 2- or 4-byte header
// and at most limit bytes, unmasked in place; and the frame's length, for
// consume. Anything else (control frames, fragments, binary, frames not
// fully read yet, frames with reserved bits) is left to gorilla. Since
// sockConn hands gorilla one frame at a time, gorilla's own buffer is empty
// at a frame boundary, and skipping whole frames behind its back leaves it
// in the state it expects.
func (c *sockConn) textFrame(limit int64) ([]byte, int, bool) {
	if c.rbuf == nil || c.left != 0 || c.hdrN != 0 {
		return nil, 0, false
	}
	b := (*c.rbuf)[c.roff:c.rend]
	if len(b) < 6 || b[0] != 0x81 || b[1]&0x80 == 0 {
		return nil, 0, false // not FIN+text, reserved bits, or unmasked
	}
	n, h := int(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 8 {
			return nil, 0, false
		}
		n, h = int(binary.BigEndian.Uint16(b[2:4])), 4
	case 127:
		return nil, 0, false // never fits the buffer anyway
	}
	if int64(n) > limit || len(b) < h+4+n {
		return nil, 0, false
	}
	payload := b[h+4 : h+4+n]
	unmask(b[h:h+4], payload)
	return payload, h + 4 + n, true
}

// consume drops n bytes handed out by textFrame.
func (c *sockConn) consume(n int) {
	c.roff += n
	if c.roff == c.rend {
		sockPool.Put(c.rbuf)
		c.rbuf = nil
	}
}

// unmask XORs b with the masking key (RFC 6455 section 5.3), eight bytes
// at a time.
func unmask(key, b []byte) {
	k := uint64(binary.LittleEndian.Uint32(key))
	k |= k << 32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k)
	}
	for ; i < len(b); i++ {
		b[i] ^= key[i&3]
	}
}

// hdrLen is the length of the current header, as far as it is known.
func (c *sockConn) hdrLen() int {
	if c.hdrN < 2 {
		return 2
	}
	n := 2
	switch c.hdr[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if c.hdr[1]&0x80 != 0 {
		n += 4 // masking key
	}
	return n
}

// payloadLen decodes the payload length of a complete header.
func (c *sockConn) payloadLen() int64 {
	switch n := c.hdr[1] & 0x7f; n {
	case 126:
		return int64(binary.BigEndian.Uint16(c.hdr[2:4]))
	case 127:
		v := binary.BigEndian.Uint64(c.hdr[2:10])
		if v > 1<<62 {
			v = 1 << 62 // gorilla refuses it anyway
		}
		return int64(v)
	default:
		return int64(n)
	}
}

// fill reads what the socket holds into a pooled buffer. While it waits
// for data it holds no buffer: the wait happens between two attempts, and
// a failed attempt gives its buffer back.
func (c *sockConn) fill() error {
	var n int
	var rerr error
	err := c.rc.Read(func(fd uintptr) bool {
		n, rerr = c.readOnce(fd)
		return rerr != syscall.EAGAIN // else wait until readable, then try again
	})
	return c.readErr(err, rerr, n)
}

// readOnce reads what the socket holds into a pooled buffer, which it keeps
// only if it got data.
func (c *sockConn) readOnce(fd uintptr) (int, error) {
	bp := sockPool.Get().(*[]byte)
	n, err := rawio.IO(syscall.SYS_READ, fd, *bp)
	if err == nil && n > 0 {
		c.rbuf, c.roff, c.rend = bp, 0, n
	} else {
		sockPool.Put(bp)
	}
	return n, err
}

// readErr is the error of a read: err from RawConn.Read, rerr from the
// system call, io.EOF if it read nothing.
func (c *sockConn) readErr(err, rerr error, n int) error {
	switch {
	case err != nil:
		return &net.OpError{Op: "read", Net: "tcp", Addr: c.RemoteAddr(), Err: err}
	case rerr != nil:
		return &net.OpError{Op: "read", Net: "tcp", Addr: c.RemoteAddr(), Err: rerr}
	case n == 0:
		return io.EOF
	}
	return nil
}

func (c *sockConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.corked {
		if c.wbuf == nil {
			c.wpool = sockPool.Get().(*[]byte)
			c.wbuf = (*c.wpool)[:0]
		}
		if len(c.wbuf)+len(p) <= cap(c.wbuf) {
			c.wbuf = append(c.wbuf, p...)
			return len(p), nil
		}
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return c.writeAll(p)
}

// writeAll writes p, waiting for room in the socket buffer up to the write
// deadline, as net.Conn.Write does. c.wmu is held.
func (c *sockConn) writeAll(p []byte) (int, error) {
	n, err := rawio.Write(c.rc, p)
	if err != nil {
		return n, &net.OpError{Op: "write", Net: "tcp", Addr: c.RemoteAddr(), Err: err}
	}
	return n, nil
}

// cork makes writes collect in a buffer until uncork.
func (c *sockConn) cork() {
	c.wmu.Lock()
	c.corked = true
	c.wmu.Unlock()
}

// uncork writes what was collected, in one system call.
func (c *sockConn) uncork() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.corked = false
	return c.flushLocked()
}

func (c *sockConn) flushLocked() error {
	if c.wbuf == nil {
		return nil
	}
	_, err := c.writeAll(c.wbuf)
	sockPool.Put(c.wpool)
	c.wbuf, c.wpool = nil, nil
	return err
}
