package hub

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"unsafe"

	"github.com/gorilla/websocket"
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

	// wmu orders writes to this one socket (netFD has such a lock too); it
	// is held during a write, like netFD's, and never with a hub lock.
	wmu    sync.Mutex
	corked bool
	wbuf   []byte // pooled while corked and non-empty
	wpool  *[]byte
}

func (c *sockConn) Read(p []byte) (int, error) {
	if c.rbuf == nil {
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
		bp := sockPool.Get().(*[]byte)
		n, rerr = rawIO(syscall.SYS_READ, fd, *bp)
		if rerr == syscall.EAGAIN {
			sockPool.Put(bp)
			return false // wait until readable, then try again
		}
		if n > 0 {
			c.rbuf, c.roff, c.rend = bp, 0, n
		} else {
			sockPool.Put(bp)
		}
		return true
	})
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
	done := 0
	var werr error
	err := c.rc.Write(func(fd uintptr) bool {
		for done < len(p) {
			n, e := rawIO(syscall.SYS_WRITE, fd, p[done:])
			if e == syscall.EAGAIN {
				return false // wait until writable
			}
			if e != nil {
				werr = e
				return true
			}
			done += n
		}
		return true
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		return done, &net.OpError{Op: "write", Net: "tcp", Addr: c.RemoteAddr(), Err: err}
	}
	return done, nil
}

// rawIO is read(2) or write(2) on a non-blocking socket, retried on EINTR,
// without the scheduler's system-call bookkeeping (syscall.RawSyscall). On
// a non-blocking socket these calls never wait, but a loopback write runs
// the receiving side's network stack inline and can take tens of
// microseconds; inside syscall.Syscall that makes sysmon hand this
// thread's P to another thread, and the two futex wake-ups that follow cost
// more than the write (a third of the server's CPU at 10,000 signals/s).
func rawIO(trap uintptr, fd uintptr, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		n, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch e {
		case 0:
			return int(n), nil
		case syscall.EINTR:
			continue
		}
		return 0, e
	}
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
