package recorder

import (
	"fmt"
	"io"
	"os"
	"sync"
	"unsafe"
)

// A clip's file is written with direct I/O where the file system allows
// it (clipFile uses a directWriter from offset 0 until its first patch):
// staged into an aligned buffer and written from there by DMA, without the
// kernel's copy into the page cache, its writeback at fsync, or the cache
// lines both take from the decoder. A recorder never reads its shards
// back, so the page cache bought it nothing. The tail of a clip, which is
// not a whole number of blocks, goes through the ordinary handle. Together
// with preallocation (prealloc_linux.go) this keeps the pipeline at 80% of
// plain decoding on the pattern stream, where buffered writes fall below
// it (docs/benchmarks.md, Recorder).
const (
	directAlign = 4096    // offset, length and memory alignment of each write
	directChunk = 1 << 20 // bytes staged per write
)

// useDirectIO lets tests exercise the buffered path on file systems that
// have direct I/O.
var useDirectIO = true

// directPool holds staging buffers: 1 MiB each, aligned.
var directPool sync.Pool // of *[]byte

func directBuffer() *[]byte {
	if b, ok := directPool.Get().(*[]byte); ok {
		return b
	}
	raw := make([]byte, directChunk+directAlign)
	skip := (directAlign - int(uintptr(unsafe.Pointer(&raw[0]))%directAlign)) % directAlign
	b := raw[skip : skip+directChunk : skip+directChunk]
	return &b
}

// directWriter stages a stream that starts at an aligned file offset and
// writes it to f, opened for direct I/O, a whole chunk at a time. If a
// direct write fails (a file system that opens with O_DIRECT but wants
// other alignment), it and every later chunk go through plain instead.
type directWriter struct {
	f     *os.File    // nil once direct writes failed
	plain io.WriterAt // the file without O_DIRECT
	buf   *[]byte
	n     int   // bytes staged
	off   int64 // file offset of the staged bytes
}

// newDirectWriter opens path for direct I/O to write from off, which must
// be aligned, with plain, the same file opened without O_DIRECT, as the
// fallback. It returns nil when direct I/O is off or not supported.
func newDirectWriter(path string, off int64, plain io.WriterAt) *directWriter {
	if !useDirectIO || off%directAlign != 0 {
		return nil
	}
	f, err := openDirect(path)
	if err != nil {
		return nil
	}
	return &directWriter{f: f, plain: plain, buf: directBuffer(), off: off}
}

func (d *directWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		k := copy((*d.buf)[d.n:], p)
		d.n += k
		p = p[k:]
		if d.n == len(*d.buf) {
			if err := d.flush(); err != nil {
				return total - len(p), err
			}
		}
	}
	return total, nil
}

// flush writes the staged bytes at their offset.
func (d *directWriter) flush() error {
	if d.f != nil {
		if _, err := d.f.WriteAt((*d.buf)[:d.n], d.off); err == nil {
			d.off += int64(d.n)
			d.n = 0
			return nil
		}
		d.f.Close()
		d.f = nil
	}
	if _, err := d.plain.WriteAt((*d.buf)[:d.n], d.off); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	d.off += int64(d.n)
	d.n = 0
	return nil
}

// finish writes what is still staged through plain, as the tail of a
// stream is not a whole number of blocks, hands the direct handle and the
// buffer back, and returns the offset the stream reached.
func (d *directWriter) finish() (int64, error) {
	if d.f != nil {
		d.f.Close()
		d.f = nil
	}
	err := d.flush()
	end := d.off
	d.close()
	return end, err
}

// close closes the direct handle and hands the buffer back.
func (d *directWriter) close() {
	if d.f != nil {
		d.f.Close()
		d.f = nil
	}
	if d.buf != nil {
		directPool.Put(d.buf)
		d.buf = nil
	}
}
