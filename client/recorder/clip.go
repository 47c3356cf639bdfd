package recorder

import (
	"archive/tar"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"
)

// ClipMeta describes a clip. It is written as KEY.json (tar) or in
// __metadata__ (safetensors).
type ClipMeta struct {
	Key   string `json:"key"`
	Clip  int    `json:"clip"`
	Room  string `json:"room"`
	Peer  string `json:"peer"`
	User  string `json:"user"`
	Track string `json:"track"`
	Codec string `json:"codec"`
	// FPS is the sampling rate; 0 means every decoded frame was kept.
	FPS    float64 `json:"fps"`
	Width  int     `json:"width"`
	Height int     `json:"height"`
	Fit    string  `json:"fit"`
	Frames int     `json:"frames"`
	// StartUS and EndUS are the capture times of the first and last frame,
	// in Unix microseconds (as in ts).
	StartUS int64 `json:"start_us"`
	EndUS   int64 `json:"end_us"`
	// SourceSizes gives the decoded size of every frame as runs: each entry
	// holds from frame From on, until the next entry.
	SourceSizes []SizeRun `json:"source_sizes"`
	// Dropped counts frames lost during this clip, by cause.
	Dropped Drops `json:"dropped"`
	// ConsentTime is when the peer's track reached the recorder. Peers send
	// to a recorder only after their user opted in, so this is when consent
	// took effect.
	ConsentTime time.Time `json:"consent_time"`
}

// SizeRun says frames from From on were decoded at Width×Height.
type SizeRun struct {
	From   int `json:"from"`
	Width  int `json:"width"`
	Height int `json:"height"`
}

// Drops counts lost frames by cause.
type Drops struct {
	// Queue: frames dropped (oldest first) because writing fell behind.
	Queue int64 `json:"queue"`
	// Gap: frames skipped after lost packets, until the next key frame.
	Gap int64 `json:"gap"`
	// Decode: frames the decoder refused.
	Decode int64 `json:"decode"`
}

// Sub returns d - e, field by field.
func (d Drops) Sub(e Drops) Drops {
	return Drops{Queue: d.Queue - e.Queue, Gap: d.Gap - e.Gap, Decode: d.Decode - e.Decode}
}

// ErrEmptyClip: a clip was finished with no frames; nothing was written.
var ErrEmptyClip = errors.New("recorder: empty clip")

// Clip is one clip being written: frames stream into a partial file that is
// renamed into place when the clip is finished.
type Clip struct {
	o        *Output
	meta     ClipMeta
	n        int // frames written
	frameLen int
	ts       []int64
	sheet    *sheet
	f        *os.File
	tmp      string
	final    string
	hash     hash.Hash
	w        io.Writer // f, and hash while the header as written is final
	head     []byte    // tar: the header written for a full clip
	dataOff  int64     // where the frame data starts
	// prealloc: the file was given the size of a full clip's frames up
	// front, so it must be cut to what was written before the tail.
	prealloc bool
	// dio, when not nil, writes the tar's head and frames (see direct.go).
	dio *directWriter
}

// StartClip begins a clip for one peer's track. meta's Key, Clip, Room,
// Width, Height and Frames are filled in.
func (o *Output) StartClip(meta ClipMeta) (*Clip, error) {
	n := o.reserve()
	cfg := o.cfg
	meta.Clip = n
	meta.Room = cfg.Room
	meta.Width, meta.Height = cfg.Size.W, cfg.Size.H
	meta.Key = fmt.Sprintf("%s_%s_%06d", keyPart(cfg.Room), keyPart(meta.Peer), n)
	base := fmt.Sprintf("%s-%06d%s", cfg.Room, n, cfg.Format.ext())
	c := &Clip{
		o: o, meta: meta,
		frameLen: cfg.Size.W * cfg.Size.H * 3,
		ts:       make([]int64, 0, cfg.ClipFrames),
		final:    filepath.Join(cfg.Dir, base),
		tmp:      filepath.Join(cfg.Dir, "."+base+partialSuffix),
		hash:     cfg.Checksum.newHash(),
	}
	if !cfg.NoSheets {
		c.sheet = newSheet(cfg.Size, cfg.ClipFrames)
	}
	f, err := os.OpenFile(c.tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("recorder: clip: %w", err)
	}
	c.f = f
	c.w = io.MultiWriter(f, c.hash)
	if err := c.begin(); err != nil {
		c.Abort()
		return nil, err
	}
	return c, nil
}

// begin writes what precedes the frames, assuming the clip will be full.
func (c *Clip) begin() error {
	switch c.o.cfg.Format {
	case FormatTar:
		c.head = c.tarHead(c.o.cfg.ClipFrames)
		if c.dio = newDirectWriter(c.tmp, 0, c.f); c.dio != nil {
			c.w = io.MultiWriter(c.dio, c.hash)
			if _, err := c.f.Seek(int64(len(c.head)), io.SeekStart); err != nil {
				return fmt.Errorf("recorder: clip: %w", err)
			}
		}
		if _, err := c.w.Write(c.head); err != nil {
			return fmt.Errorf("recorder: clip: %w", err)
		}
	case FormatSafetensors:
		// The header is written last, into space reserved here.
		c.w = c.f
		if _, err := c.f.Seek(stReserve, io.SeekStart); err != nil {
			return fmt.Errorf("recorder: clip: %w", err)
		}
	}
	off, err := c.f.Seek(0, io.SeekCurrent)
	c.dataOff = off
	if err == nil {
		c.prealloc = preallocate(c.f, off+int64(c.o.cfg.ClipFrames)*int64(c.frameLen))
	}
	return err
}

// tarHead is the tar header of KEY.frames.npy plus the .npy header, for
// n frames. Its length does not depend on n.
func (c *Clip) tarHead(n int) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	size := int64(npyHeaderLen) + int64(n)*int64(c.frameLen)
	// WriteHeader writes the header blocks at once; the data follows in the file.
	_ = tw.WriteHeader(c.tarEntry(c.meta.Key+".frames.npy", size))
	s := c.o.cfg.Size
	buf.Write(npyHeader("|u1", n, s.H, s.W, 3))
	return buf.Bytes()
}

func (c *Clip) tarEntry(name string, size int64) *tar.Header {
	return &tar.Header{
		Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644,
		// Whole seconds, so the header never needs a PAX time record.
		ModTime: c.meta.ConsentTime.Truncate(time.Second),
		Format:  tar.FormatPAX,
	}
}

// Len is the number of frames written so far.
func (c *Clip) Len() int { return c.n }

// Full reports whether the clip has ClipFrames frames.
func (c *Clip) Full() bool { return c.n >= c.o.cfg.ClipFrames }

// Meta is the clip's metadata so far.
func (c *Clip) Meta() ClipMeta { return c.meta }

// Add appends one RGB frame (W×H×3 at the output size) captured at ts Unix
// microseconds and decoded at src.
func (c *Clip) Add(rgb []byte, ts int64, src Size) error {
	if c.Full() {
		return fmt.Errorf("recorder: clip %s is full", c.meta.Key)
	}
	if len(rgb) != c.frameLen {
		return fmt.Errorf("recorder: frame of %d bytes, want %d", len(rgb), c.frameLen)
	}
	if _, err := c.w.Write(rgb); err != nil {
		return fmt.Errorf("recorder: clip %s: %w", c.meta.Key, err)
	}
	if c.n == 0 {
		c.meta.StartUS = ts
	}
	c.meta.EndUS = ts
	if r := c.meta.SourceSizes; len(r) == 0 || r[len(r)-1].Width != src.W || r[len(r)-1].Height != src.H {
		c.meta.SourceSizes = append(c.meta.SourceSizes, SizeRun{From: c.n, Width: src.W, Height: src.H})
	}
	if c.sheet != nil {
		c.sheet.add(c.n, rgb, c.o.cfg.Size, ts-c.meta.StartUS)
	}
	c.ts = append(c.ts, ts)
	c.n++
	return nil
}

// Abort removes the partial file.
func (c *Clip) Abort() {
	if c.dio != nil {
		c.dio.close()
		c.dio = nil
	}
	if c.sheet != nil {
		c.sheet.release()
	}
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
	os.Remove(c.tmp)
}

// Finish completes the clip with the drops counted during it: it writes the
// timestamps and metadata, renames the file into place, writes the contact
// sheet and adds the shard to the manifest. A clip with no frames is removed
// and ErrEmptyClip returned.
func (c *Clip) Finish(d Drops) (Shard, error) {
	if c.f == nil {
		return Shard{}, fmt.Errorf("recorder: clip %s already finished", c.meta.Key)
	}
	if c.n == 0 {
		c.Abort()
		return Shard{}, ErrEmptyClip
	}
	c.meta.Frames = c.n
	c.meta.Dropped = d
	meta, err := json.Marshal(c.meta)
	if err != nil {
		c.Abort()
		return Shard{}, fmt.Errorf("recorder: clip metadata: %w", err)
	}
	sum, size, err := c.finishFile(meta)
	if err == nil {
		err = c.place()
	}
	if err != nil {
		c.Abort()
		return Shard{}, fmt.Errorf("recorder: clip %s: %w", c.meta.Key, err)
	}
	sh := Shard{
		File: filepath.Base(c.final), Format: c.o.cfg.Format.String(),
		Samples: []Sample{{Key: c.meta.Key, Peer: c.meta.Peer, User: c.meta.User, Track: c.meta.Track, Frames: c.n}},
		Frames:  c.n, Bytes: size, Time: time.Now().UTC(),
	}
	c.o.cfg.Checksum.record(&sh, sum)
	if c.sheet != nil {
		// A sheet is a convenience: failing to write one loses no data.
		if name, err := c.writeSheet(); err != nil {
			c.o.log.Warn("contact sheet not written", "clip", c.meta.Key, "err", err)
		} else {
			sh.Sheet = name
		}
	}
	return sh, c.o.commit(sh)
}

// finishFile writes the rest of the file and returns its checksum, in hex,
// and its size.
func (c *Clip) finishFile(meta []byte) (string, int64, error) {
	var err error
	if c.dio != nil {
		end, err := c.dio.finish()
		c.dio = nil
		if err == nil {
			_, err = c.f.Seek(end, io.SeekStart)
		}
		if err != nil {
			return "", 0, err
		}
		c.w = io.MultiWriter(c.f, c.hash)
	}
	if c.prealloc && c.n < c.o.cfg.ClipFrames {
		if err := c.f.Truncate(c.dataOff + int64(c.n)*int64(c.frameLen)); err != nil {
			return "", 0, err
		}
	}
	switch c.o.cfg.Format {
	case FormatTar:
		err = c.finishTar(meta)
	case FormatSafetensors:
		err = c.finishSafetensors(meta)
	}
	if err != nil {
		return "", 0, err
	}
	size, err := c.f.Seek(0, io.SeekEnd)
	if err != nil {
		return "", 0, err
	}
	if c.w != io.Writer(c.f) { // hashed while writing
		return hex.EncodeToString(c.hash.Sum(nil)), size, nil
	}
	// The start of the file changed after it was written: hash it again.
	h := c.o.cfg.Checksum.newHash()
	if _, err := io.Copy(h, io.NewSectionReader(c.f, 0, size)); err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), size, nil
}

func (c *Clip) finishTar(meta []byte) error {
	if c.n != c.o.cfg.ClipFrames {
		// A short clip: patch the sizes in the headers written up front.
		head := c.tarHead(c.n)
		if len(head) != len(c.head) {
			return fmt.Errorf("tar header changed length (%d, %d)", len(head), len(c.head))
		}
		if _, err := c.f.WriteAt(head, 0); err != nil {
			return err
		}
		c.w = c.f
	}
	dataLen := int64(npyHeaderLen) + int64(c.n)*int64(c.frameLen)
	if pad := (512 - dataLen%512) % 512; pad > 0 {
		if _, err := c.w.Write(make([]byte, pad)); err != nil {
			return err
		}
	}
	tw := tar.NewWriter(c.w)
	for _, e := range []struct {
		name string
		data []byte
	}{{".ts.npy", npyInt64(c.ts)}, {".json", meta}} {
		if err := tw.WriteHeader(c.tarEntry(c.meta.Key+e.name, int64(len(e.data)))); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// place makes the partial file the shard, durably unless NoSync.
func (c *Clip) place() error {
	sync := !c.o.cfg.NoSync
	if sync {
		if err := c.f.Sync(); err != nil {
			return err
		}
	}
	err := c.f.Close()
	c.f = nil
	if err != nil {
		return err
	}
	if err := os.Rename(c.tmp, c.final); err != nil {
		return err
	}
	if sync {
		return syncDir(c.o.cfg.Dir)
	}
	return nil
}

func (c *Clip) writeSheet() (string, error) {
	defer c.sheet.release()
	name := fmt.Sprintf("%s-%06d.png", c.o.cfg.Room, c.meta.Clip)
	tmp := filepath.Join(c.o.cfg.Dir, "."+name+partialSuffix)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return "", err
	}
	ok, err := c.sheet.writePNG(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && ok {
		err = os.Rename(tmp, filepath.Join(c.o.cfg.Dir, name))
	}
	if err != nil || !ok {
		os.Remove(tmp)
		return "", err
	}
	return name, nil
}
