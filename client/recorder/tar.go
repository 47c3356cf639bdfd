package recorder

import (
	"archive/tar"
	"bytes"
	"fmt"
	"time"
)

// tarShard writes a clip as a WebDataset tar shard of one sample:
// KEY.frames.npy (uint8 [N, H, W, 3]), KEY.ts.npy (int64 [N]), with audio
// KEY.audio.npy (float32 [S]), and KEY.json.
// The frames stream into the first member, whose tar and .npy headers are
// written for a full clip up front; a clip that ends short gets them
// rewritten for its length, which is the same number of bytes.
type tarShard struct {
	key   string
	size  Size
	full  int       // frames in a full clip
	mtime time.Time // of every member
	begun int       // length of the head begin wrote
}

func (t *tarShard) frameLen() int64 { return int64(t.size.W) * int64(t.size.H) * 3 }

// head is the tar header of KEY.frames.npy and the .npy header, for n
// frames. Its length does not depend on n.
func (t *tarShard) head(n int) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// WriteHeader writes the header blocks at once; the data follows in the file.
	_ = tw.WriteHeader(t.entry(t.key+".frames.npy", int64(npyHeaderLen)+int64(n)*t.frameLen()))
	buf.Write(npyHeader("|u1", n, t.size.H, t.size.W, 3))
	return buf.Bytes()
}

func (t *tarShard) entry(name string, size int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: t.mtime, Format: tar.FormatPAX}
}

func (t *tarShard) begin(f *clipFile) error {
	head := t.head(t.full)
	t.begun = len(head)
	_, err := f.Write(head)
	return err
}

func (t *tarShard) end(f *clipFile, n int, ts []int64, audio []float32, meta []byte) error {
	if n != t.full {
		head := t.head(n)
		if len(head) != t.begun {
			return fmt.Errorf("tar header changed length for %d frames", n)
		}
		if err := f.patch(head, 0); err != nil {
			return err
		}
	}
	dataLen := int64(npyHeaderLen) + int64(n)*t.frameLen()
	if pad := (512 - dataLen%512) % 512; pad > 0 {
		if _, err := f.Write(make([]byte, pad)); err != nil {
			return err
		}
	}
	tw := tar.NewWriter(f)
	type member struct {
		name string
		data []byte
	}
	members := []member{{".ts.npy", npyInt64(ts)}}
	if audio != nil {
		members = append(members, member{".audio.npy", npyFloat32(audio)})
	}
	for _, e := range append(members, member{".json", meta}) {
		if err := tw.WriteHeader(t.entry(t.key+e.name, int64(len(e.data)))); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	return tw.Close()
}
