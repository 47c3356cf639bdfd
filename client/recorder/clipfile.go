package recorder

import (
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"os"
	"strings"
)

// clipFile is a clip's partial file, the one place that knows how it is
// written. Bytes written through it in order are checksummed as they go,
// so that a full clip, the usual case, is never read back; a patch over
// bytes already written marks that sum stale, and checksum then reads the
// file once. The stream goes through a direct-I/O writer while there is one
// (direct.go): written is the one offset, which the direct writer reaches
// when it is finished, before any patch and before the checksum. The space
// for a full clip is reserved up front and cut back when the file is done.
type clipFile struct {
	f       *os.File
	path    string
	kind    Checksum
	sum     hash.Hash // of the bytes written in order so far
	written int64     // how many
	stale   bool      // bytes already summed were rewritten
	// direct, while not nil, carries the stream from offset 0 (see
	// direct.go); the first patch or rewrite ends it.
	direct *directWriter
	// prealloc: the file was given more space than written; close cuts it.
	prealloc bool
}

func createClipFile(path string, kind Checksum) (*clipFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	return &clipFile{f: f, path: path, kind: kind, sum: kind.newHash(), direct: newDirectWriter(path, 0, f)}, nil
}

// reserve asks the file system for n more bytes in one extent.
func (c *clipFile) reserve(n int64) {
	c.prealloc = preallocate(c.f, c.written+n) || c.prealloc
}

// endDirect writes what the direct writer holds and goes on through f.
func (c *clipFile) endDirect() error {
	if c.direct == nil {
		return nil
	}
	end, err := c.direct.finish()
	c.direct = nil
	if err == nil {
		_, err = c.f.Seek(end, io.SeekStart)
	}
	return err
}

// Write appends p to the file and to the running checksum.
func (c *clipFile) Write(p []byte) (int, error) {
	var w io.Writer = c.f
	if c.direct != nil {
		w = c.direct
	}
	n, err := w.Write(p)
	c.sum.Write(p[:n])
	c.written += int64(n)
	return n, err
}

// patch rewrites bytes at off, before the end.
func (c *clipFile) patch(p []byte, off int64) error {
	if off+int64(len(p)) > c.written {
		return errors.New("patch beyond what was written")
	}
	if err := c.endDirect(); err != nil {
		return err
	}
	c.stale = true
	_, err := c.f.WriteAt(p, off)
	return err
}

// rewrite replaces the first n bytes of the file with head, moving the rest
// (a safetensors header that outgrew its reserved space): the new content
// goes to a second partial file that is renamed over this one.
func (c *clipFile) rewrite(head []byte, n int64) error {
	if err := c.endDirect(); err != nil {
		return err
	}
	tmp2 := strings.TrimSuffix(c.path, partialSuffix) + ".move" + partialSuffix
	f2, err := os.OpenFile(tmp2, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f2.Write(head)
	if err == nil {
		_, err = io.Copy(f2, io.NewSectionReader(c.f, n, c.written-n))
	}
	if err == nil {
		err = os.Rename(tmp2, c.path)
	}
	if err != nil {
		f2.Close()
		os.Remove(tmp2)
		return err
	}
	c.f.Close()
	c.f = f2
	c.written += int64(len(head)) - n
	c.stale = true
	return nil
}

// checksum returns the file's checksum, in hex, and its size.
func (c *clipFile) checksum() (string, int64, error) {
	if err := c.endDirect(); err != nil {
		return "", 0, err
	}
	if c.prealloc {
		if err := c.f.Truncate(c.written); err != nil {
			return "", 0, err
		}
	}
	if !c.stale {
		return hex.EncodeToString(c.sum.Sum(nil)), c.written, nil
	}
	h := c.kind.newHash()
	if _, err := io.Copy(h, io.NewSectionReader(c.f, 0, c.written)); err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), c.written, nil
}

// close closes the file, after fsync when sync is set.
func (c *clipFile) close(sync bool) error {
	if sync {
		if err := c.f.Sync(); err != nil {
			return err
		}
	}
	return c.f.Close()
}

// remove closes and deletes the partial file.
func (c *clipFile) remove() {
	if c.direct != nil {
		c.direct.close()
	}
	c.f.Close()
	os.Remove(c.path)
}
