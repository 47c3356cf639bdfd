package recorder

import (
	"encoding/json"
	"errors"
	"fmt"
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
	// ConsentTime is when the peer's consent to being recorded reached the
	// recorder (its client says so when its user grants it, before any
	// media; see client.RecordingConsent and the room's consent log).
	ConsentTime time.Time `json:"consent_time"`
	// Audio describes KEY.audio.npy, the peer's audio over the clip's
	// span; absent when the peer sent none.
	Audio *AudioMeta `json:"audio,omitempty"`
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
// renamed into place when the clip is finished. What precedes and follows
// the frames is the format's business (shardFormat: tarShard,
// safetensorsShard); Clip keeps the frames, their times, the metadata and
// the contact sheet.
type Clip struct {
	o        *Output
	meta     ClipMeta
	n        int // frames written
	frameLen int
	ts       []int64
	sheet    *sheet
	format   shardFormat
	file     *clipFile // nil once finished or aborted
	final    string
	audio    []float32 // SetAudio's, nil without audio
}

// shardFormat writes what one format puts around a clip's frames.
type shardFormat interface {
	// begin writes what precedes the frames of a full clip.
	begin(f *clipFile) error
	// end writes what follows n frames, with their capture times, the
	// audio (nil: none) and the metadata (JSON), and rewrites what begin
	// wrote if it depends on n.
	end(f *clipFile, n int, ts []int64, audio []float32, meta []byte) error
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
	}
	switch cfg.Format {
	case FormatTar:
		c.format = &tarShard{key: meta.Key, size: cfg.Size, full: cfg.ClipFrames,
			mtime: meta.ConsentTime.Truncate(time.Second)} // whole seconds: no PAX time record
	case FormatSafetensors:
		c.format = &safetensorsShard{size: cfg.Size}
	}
	if !cfg.NoSheets {
		c.sheet = newSheet(cfg.Size, cfg.ClipFrames)
	}
	f, err := createClipFile(filepath.Join(cfg.Dir, "."+base+partialSuffix), cfg.Checksum)
	if err != nil {
		return nil, fmt.Errorf("recorder: clip: %w", err)
	}
	c.file = f
	if err := c.format.begin(f); err != nil {
		c.Abort()
		return nil, fmt.Errorf("recorder: clip: %w", err)
	}
	f.reserve(int64(cfg.ClipFrames) * int64(c.frameLen))
	return c, nil
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
	if c.file == nil {
		return fmt.Errorf("recorder: clip %s is finished", c.meta.Key)
	}
	if c.Full() {
		return fmt.Errorf("recorder: clip %s is full", c.meta.Key)
	}
	if len(rgb) != c.frameLen {
		return fmt.Errorf("recorder: frame of %d bytes, want %d", len(rgb), c.frameLen)
	}
	if _, err := c.file.Write(rgb); err != nil {
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

// SetAudio gives the clip its audio (16 kHz mono float32 over the clip's
// span, as AudioMeta describes), written at Finish.
func (c *Clip) SetAudio(samples []float32, meta AudioMeta) {
	c.audio, c.meta.Audio = samples, &meta
}

// Abort removes the partial file.
func (c *Clip) Abort() {
	if c.sheet != nil {
		c.sheet.release()
	}
	if c.file != nil {
		c.file.remove()
		c.file = nil
	}
}

// Finish completes the clip with the drops counted during it: it writes the
// timestamps and metadata, renames the file into place, writes the contact
// sheet and adds the shard to the manifest. A clip with no frames is removed
// and ErrEmptyClip returned.
func (c *Clip) Finish(d Drops) (Shard, error) {
	if c.file == nil {
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
	var sum string
	var size int64
	// Direct I/O is for the frames; what follows them goes through the
	// plain handle, as the writer before this one did (with the tail staged
	// for direct I/O too, TestLossyPath in e2e/networks saw the recorder
	// stall at the end of a track, and did not without).
	err = c.file.endDirect()
	if err == nil {
		err = c.format.end(c.file, c.n, c.ts, c.audio, meta)
	}
	if err == nil {
		sum, size, err = c.file.checksum()
	}
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

// place makes the partial file the shard, durably unless NoSync.
func (c *Clip) place() error {
	sync := !c.o.cfg.NoSync
	if err := c.file.close(sync); err != nil {
		return err
	}
	tmp := c.file.path
	c.file = nil
	if err := os.Rename(tmp, c.final); err != nil {
		os.Remove(tmp)
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
