//go:build unix

package wsconn

import (
	"io"
	"net"
	"syscall"
)

// newSource waits for a plain TCP socket's readiness through its
// syscall.RawConn, so that an idle connection waits without even the small
// array; anything else (TLS, or a connection that is not a socket) gets the
// portable smallSource.
func newSource(nc net.Conn, portable bool) source {
	if tc, ok := nc.(*net.TCPConn); ok && !portable {
		if rc, err := tc.SyscallConn(); err == nil {
			s := &rawSource{nc: nc, rc: rc}
			s.readFn = s.readReady // one closure per connection, not per wait
			return s
		}
	}
	return &smallSource{nc: nc}
}

// rawSource reads a TCP socket inside syscall.RawConn.Read. Its callback
// only reads (into a buffer taken from the pool once the socket is
// readable); nothing is handled inside it, and nothing that runs inside it
// can close the socket, so the runtime's wait for in-flight I/O at Close
// can never wait on the closer itself.
type rawSource struct {
	nc     net.Conn
	rc     syscall.RawConn
	readFn func(fd uintptr) bool

	// Results of readReady for await.
	bp  *[]byte
	n   int
	err error
}

func (s *rawSource) await() (*[]byte, int, error) {
	err := s.rc.Read(s.readFn)
	bp, n, rerr := s.bp, s.n, s.err
	s.bp, s.n, s.err = nil, 0, nil
	if err == nil {
		err = rerr
	}
	if err != nil || n == 0 {
		if bp != nil {
			putReadBuf(bp)
		}
		if err == nil {
			err = io.EOF
		}
		return nil, 0, &net.OpError{Op: "read", Net: "tcp", Addr: s.nc.LocalAddr(), Err: err}
	}
	return bp, n, nil
}

// readReady is RawConn.Read's callback: it reports false (wait) on EAGAIN,
// after giving the buffer back.
func (s *rawSource) readReady(fd uintptr) bool {
	if s.bp == nil {
		s.bp = getReadBuf()
	}
	for {
		s.n, s.err = sysRead(fd, *s.bp)
		if s.err != syscall.EINTR {
			break
		}
	}
	if s.err == syscall.EAGAIN {
		putReadBuf(s.bp)
		s.bp, s.n, s.err = nil, 0, nil
		return false
	}
	if s.n < 0 {
		s.n = 0
	}
	return true
}

func (s *rawSource) read(p []byte) (int, error) { return s.nc.Read(p) }
