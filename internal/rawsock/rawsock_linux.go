//go:build linux

package rawsock

import (
	"io"
	"net"
	"syscall"
	"unsafe"
)

// IO is read(2) (trap syscall.SYS_READ) or write(2) (syscall.SYS_WRITE)
// of b on the non-blocking socket fd, retried on EINTR. It returns
// syscall.EAGAIN when the socket has nothing to read or no room.
func IO(trap, fd uintptr, b []byte) (int, error) {
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

// Read is IO's read(2) of p on fd.
func Read(fd uintptr, p []byte) (int, error) { return IO(syscall.SYS_READ, fd, p) }

// read reads into p, waiting (up to the read deadline) until the socket
// has data. It returns 0 and no error at end of stream.
func read(rc syscall.RawConn, p []byte) (int, error) {
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		n, rerr = IO(syscall.SYS_READ, fd, p)
		return rerr != syscall.EAGAIN // else wait until readable
	})
	if err != nil {
		return 0, err
	}
	return n, rerr
}

// write writes all of p, waiting (up to the write deadline) for room in
// the socket buffer, and returns how much was written.
func write(rc syscall.RawConn, p []byte) (int, error) {
	done := 0
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		for done < len(p) {
			n, e := IO(syscall.SYS_WRITE, fd, p[done:])
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
	if err != nil {
		return done, err
	}
	return done, werr
}

// Conn is a TCP connection whose Read and Write use raw system calls.
type Conn struct {
	net.Conn
	rc syscall.RawConn
}

// Wrap returns c as a *Conn if it is a socket (a syscall.Conn), else c
// itself.
func Wrap(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	return &Conn{Conn: c, rc: rc}
}

// Raw is the socket's syscall.RawConn, for callers that read inside its
// callback.
func (c *Conn) Raw() syscall.RawConn { return c.rc }

func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := read(c.rc, p)
	switch {
	case err != nil:
		return n, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *Conn) Write(p []byte) (int, error) {
	n, err := write(c.rc, p)
	if err != nil {
		return n, &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	return n, nil
}
