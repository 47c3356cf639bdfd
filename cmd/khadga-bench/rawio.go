//go:build linux

package main

// The tuned client's sockets read and write with raw system calls.
//
// A read or write on a non-blocking socket never waits, but a loopback
// write runs the receiving side's network stack inline and can take tens of
// microseconds. Inside syscall.Syscall that lets the Go scheduler's sysmon
// hand the thread's P to another thread, and the futex wake-ups that follow
// cost more than the write itself. syscall.RawSyscall skips that
// bookkeeping; waiting for a socket is still done by the runtime's poller,
// through syscall.RawConn, so deadlines keep working. The load client
// shares the cores with the server it measures: what it saves goes to the
// server. (The server once did the same; since issue 12 only the bench
// does, so this lives here and builds on Linux only.)

import (
	"io"
	"net"
	"syscall"
	"unsafe"
)

// rawIO is read(2) (trap syscall.SYS_READ) or write(2) (syscall.SYS_WRITE)
// of b on the non-blocking socket fd, retried on EINTR. It returns
// syscall.EAGAIN when the socket has nothing to read or no room.
func rawIO(trap, fd uintptr, b []byte) (int, error) {
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

// rawRead reads into p, waiting (up to the read deadline) until the socket
// has data. It returns 0 and no error at end of stream.
func rawRead(rc syscall.RawConn, p []byte) (int, error) {
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		n, rerr = rawIO(syscall.SYS_READ, fd, p)
		return rerr != syscall.EAGAIN // else wait until readable
	})
	if err != nil {
		return 0, err
	}
	return n, rerr
}

// rawWrite writes all of p, waiting (up to the write deadline) for room in
// the socket buffer, and returns how much was written.
func rawWrite(rc syscall.RawConn, p []byte) (int, error) {
	done := 0
	var werr error
	err := rc.Write(func(fd uintptr) bool {
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
	if err != nil {
		return done, err
	}
	return done, werr
}

// rawConn is a net.Conn whose Read and Write use raw system calls.
type rawConn struct {
	net.Conn
	rc syscall.RawConn
}

// wrapRaw returns c with raw reads and writes if it is a socket (a
// syscall.Conn), else c itself.
func wrapRaw(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	return &rawConn{Conn: c, rc: rc}
}

func (c *rawConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := rawRead(c.rc, p)
	switch {
	case err != nil:
		return n, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *rawConn) Write(p []byte) (int, error) {
	n, err := rawWrite(c.rc, p)
	if err != nil {
		return n, &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	return n, nil
}
