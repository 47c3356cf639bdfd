package hub

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"

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

	// Read state, used only by the connection's reader.
	rbuf       *[]byte
	roff, rend int

	// wmu orders writes to this one socket (netFD has such a lock too); it
	// is held during a write, like netFD's, and never with a hub lock.
	wmu    sync.Mutex
	corked bool
	wbuf   []byte // pooled while corked and non-empty
	wpool  *[]byte
}

func (c *sockConn) Read(p []byte) (int, error) {
	if c.rbuf == nil {
		if len(p) >= sockBufSize {
			return c.Conn.Read(p)
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, (*c.rbuf)[c.roff:c.rend])
	c.roff += n
	if c.roff == c.rend {
		sockPool.Put(c.rbuf)
		c.rbuf = nil
	}
	return n, nil
}

// fill reads what the socket holds into a pooled buffer. While it waits
// for data it holds no buffer: the wait happens between two attempts, and
// a failed attempt gives its buffer back.
func (c *sockConn) fill() error {
	var n int
	var rerr error
	err := c.rc.Read(func(fd uintptr) bool {
		bp := sockPool.Get().(*[]byte)
		for {
			n, rerr = syscall.Read(int(fd), *bp)
			if rerr != syscall.EINTR {
				break
			}
		}
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
	return c.Conn.Write(p)
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
	_, err := c.Conn.Write(c.wbuf)
	sockPool.Put(c.wpool)
	c.wbuf, c.wpool = nil, nil
	return err
}
