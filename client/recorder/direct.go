package recorder

import (
	"fmt"
	"io"
	"os"
	"sync"
	"unsafe"
)

// Frames reach a tar shard's file with direct I/O where the file system
// allows it: staged into an aligned buffer and written from there by DMA,
// without the kernel's copy into the page cache, its writeback at fsync, or
// the cache lines both take from the decoder. A recorder never reads its
// shards back, so the page cache bought it nothing. The tail of a clip,
// which is not a whole number of blocks, goes through the ordinary handle.
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
// writes it to f, opened for direct I/O, a whole chunk at a time.
type directWriter struct {
	f   *os.File
	buf *[]byte
	n   int   // bytes staged
	off int64 // file offset of the staged bytes
}

// newDirectWriter opens path for direct I/O to write from off, which must
// be aligned. It returns nil when direct I/O is off or not supported.
func newDirectWriter(path string, off int64) *directWriter {
	if !useDirectIO || off%directAlign != 0 {
		return nil
	}
	f, err := openDirect(path)
	if err != nil {
		return nil
	}
	return &directWriter{f: f, buf: directBuffer(), off: off}
}

func (d *directWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		k := copy((*d.buf)[d.n:], p)
		d.n += k
		p = p[k:]
		if d.n == len(*d.buf) {
			if _, err := d.f.WriteAt(*d.buf, d.off); err != nil {
				return total - len(p), fmt.Errorf("direct write: %w", err)
			}
			d.off += int64(d.n)
			d.n = 0
		}
	}
	return total, nil
}

// finish writes what is still staged to w at its offset, closes the direct
// handle and returns the offset the stream reached.
func (d *directWriter) finish(w io.WriterAt) (int64, error) {
	_, err := w.WriteAt((*d.buf)[:d.n], d.off)
	end := d.off + int64(d.n)
	d.close()
	return end, err
}

// close closes the direct handle and hands the buffer back.
func (d *directWriter) close() {
	if d.f != nil {
		d.f.Close()
		d.f = nil
		directPool.Put(d.buf)
	}
}
