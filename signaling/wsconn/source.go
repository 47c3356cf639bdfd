package wsconn

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// source is how the reader gets bytes from its socket. await is the idle
// wait: it holds no buffer until bytes arrive, then reads them into one
// from the pool. read tops up a buffer the reader holds, when a frame is
// not complete yet; it blocks until some bytes arrive.
type source interface {
	await() (bp *[]byte, n int, err error)
	read(p []byte) (int, error)
}

// readBufSize is the size of the pooled read buffers: the largest TLS
// record's plaintext, and many small frames per system call when a client
// is busy.
const readBufSize = 16 << 10

var readPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// borrowed counts the read buffers readers hold: the pooled ones and those
// grown for large frames. Idle connections hold none.
var borrowed atomic.Int64

func getReadBuf() *[]byte {
	borrowed.Add(1)
	return readPool.Get().(*[]byte)
}

// putReadBuf returns a pooled buffer; one grown for a large frame is left
// to the garbage collector.
func putReadBuf(bp *[]byte) {
	borrowed.Add(-1)
	if len(*bp) == readBufSize {
		readPool.Put(bp)
	}
}

// smallSource waits in a Read of a 16-byte array of its own: the portable
// way to hold no pooled buffer while idle. Over TLS, the rest of the record
// that Read decrypted waits inside the tls.Conn, and read takes it without
// a system call.
type smallSource struct {
	nc    net.Conn
	small [16]byte
}

func (s *smallSource) await() (*[]byte, int, error) {
	n, err := s.nc.Read(s.small[:])
	if n == 0 {
		if err == nil {
			err = errNoProgress
		}
		return nil, 0, err
	}
	bp := getReadBuf()
	copy(*bp, s.small[:n])
	return bp, n, nil // an error that came with the bytes comes again on the next read
}

func (s *smallSource) read(p []byte) (int, error) { return s.nc.Read(p) }

// errNoProgress is a Read that returned neither bytes nor an error.
var errNoProgress = errors.New("wsconn: read returned no bytes and no error")
