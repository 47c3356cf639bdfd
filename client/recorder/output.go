package recorder

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Format is how clips are written.
type Format int

const (
	// FormatTar writes WebDataset-style tar shards, one clip (sample) each:
	// KEY.frames.npy, KEY.ts.npy and KEY.json, adjacent.
	FormatTar Format = iota
	// FormatSafetensors writes one .safetensors file per clip with tensors
	// "frames" and "ts" and the clip's metadata in __metadata__.
	FormatSafetensors
)

func (f Format) String() string {
	if f == FormatSafetensors {
		return "safetensors"
	}
	return "tar"
}

func (f Format) ext() string {
	if f == FormatSafetensors {
		return ".safetensors"
	}
	return ".tar"
}

// MarshalText writes f as ParseFormat reads it.
func (f Format) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText reads f as ParseFormat does, for flags and config files.
func (f *Format) UnmarshalText(b []byte) error {
	x, err := ParseFormat(string(b))
	if err == nil {
		*f = x
	}
	return err
}

// ParseFormat parses "tar" or "safetensors".
func ParseFormat(v string) (Format, error) {
	switch v {
	case "tar", "webdataset":
		return FormatTar, nil
	case "safetensors":
		return FormatSafetensors, nil
	}
	return 0, fmt.Errorf("format %q: want tar or safetensors", v)
}

// Checksum is the hash of each shard that the manifest lists.
type Checksum int

const (
	// ChecksumCRC32 is CRC-32 (IEEE), the one zlib and Python's zlib.crc32
	// compute, as 8 hex digits. It catches a torn or corrupted shard at
	// about 28 GB/s here, where SHA-256 runs at 1.7 GB/s: on one core, 13%
	// of the time to decode the video (docs/benchmarks.md).
	ChecksumCRC32 Checksum = iota
	// ChecksumSHA256 is SHA-256, for shards published where someone could
	// replace them.
	ChecksumSHA256
)

func (c Checksum) String() string {
	if c == ChecksumSHA256 {
		return "sha256"
	}
	return "crc32"
}

// MarshalText writes c as ParseChecksum reads it.
func (c Checksum) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText reads c as ParseChecksum does, for flags and config files.
func (c *Checksum) UnmarshalText(b []byte) error {
	x, err := ParseChecksum(string(b))
	if err == nil {
		*c = x
	}
	return err
}

// ParseChecksum parses "crc32" or "sha256".
func ParseChecksum(v string) (Checksum, error) {
	switch v {
	case "crc32":
		return ChecksumCRC32, nil
	case "sha256":
		return ChecksumSHA256, nil
	}
	return 0, fmt.Errorf("checksum %q: want crc32 or sha256", v)
}

func (c Checksum) newHash() hash.Hash {
	if c == ChecksumSHA256 {
		return sha256.New()
	}
	return crc32.NewIEEE()
}

// record puts sum, in hex, in the field of sh that names c.
func (c Checksum) record(sh *Shard, sum string) {
	if c == ChecksumSHA256 {
		sh.SHA256 = sum
	} else {
		sh.CRC32 = sum
	}
}

// Limits on what one output holds.
const (
	// MaxClipFrames caps --clip-frames.
	MaxClipFrames = 10000
	// MaxClipBytes caps one clip's frame array (clip frames × W × H × 3).
	MaxClipBytes = 8 << 30
	// MaxChatText caps one chat line's text; longer text is cut.
	MaxChatText = 16 << 10
)

// partialSuffix marks files being written. They start with a dot too, so
// globs for shards (room-*.tar) never match them; Open removes stale ones.
const partialSuffix = ".partial"

// OutputConfig says where and how clips are written.
type OutputConfig struct {
	Dir        string
	Room       string
	Format     Format
	Checksum   Checksum // of each shard, in the manifest
	Size       Size     // frame size
	ClipFrames int
	// NoSync skips fsync before each rename. A killed process still leaves
	// only complete shards (the kernel keeps what was written); fsync is
	// what makes a shard survive a power cut.
	NoSync bool
	// NoSheets turns contact sheets off.
	NoSheets bool
	Logger   *slog.Logger
}

// Validate reports every problem with c at once.
func (c *OutputConfig) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("output directory is empty"))
	}
	if err := validRoom(c.Room); err != nil {
		errs = append(errs, err)
	}
	if !c.Size.Valid() {
		errs = append(errs, fmt.Errorf("frame size %v: sides must be 1..%d", c.Size, MaxSide))
	}
	if c.ClipFrames < 1 || c.ClipFrames > MaxClipFrames {
		errs = append(errs, fmt.Errorf("clip frames %d: want 1..%d", c.ClipFrames, MaxClipFrames))
	} else if c.Size.Valid() && int64(c.ClipFrames)*int64(c.Size.W*c.Size.H*3) > MaxClipBytes {
		errs = append(errs, fmt.Errorf("clip of %d frames of %v is over %d bytes", c.ClipFrames, c.Size, int64(MaxClipBytes)))
	}
	if c.Checksum != ChecksumCRC32 && c.Checksum != ChecksumSHA256 {
		errs = append(errs, fmt.Errorf("checksum %d: want ChecksumCRC32 or ChecksumSHA256", c.Checksum))
	}
	if c.Format != FormatTar && c.Format != FormatSafetensors {
		errs = append(errs, fmt.Errorf("unknown format %d", c.Format))
	}
	return errors.Join(errs...)
}

// validRoom accepts the room names proto.ValidRoom accepts; they become
// file names, so the check is repeated here.
func validRoom(r string) error {
	if r == "" || len(r) > 64 || r == "." || r == ".." || strings.Trim(r, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.") != "" {
		return fmt.Errorf("room %q: want 1 to 64 of A-Z a-z 0-9 _ - .", r)
	}
	return nil
}

// Output is a directory of shards, their manifest and the room's chat log.
// Its methods are safe for concurrent use; each Clip belongs to one goroutine.
type Output struct {
	cfg  OutputConfig
	log  *slog.Logger
	mu   sync.Mutex
	next int // next clip (shard) number
	man  *os.File
	chat *os.File
}

// OpenOutput creates the directory if needed, removes partial files a killed
// recorder left, and continues shard numbering after the shards present.
func OpenOutput(cfg OutputConfig) (*Output, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("recorder: output: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("recorder: output: %w", err)
	}
	o := &Output{cfg: cfg, log: cfg.Logger}
	if err := o.scan(); err != nil {
		return nil, err
	}
	var err error
	o.man, err = os.OpenFile(filepath.Join(cfg.Dir, "manifest.jsonl"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("recorder: manifest: %w", err)
	}
	o.chat, err = os.OpenFile(filepath.Join(cfg.Dir, cfg.Room+"-chat.jsonl"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		o.man.Close()
		return nil, fmt.Errorf("recorder: chat log: %w", err)
	}
	return o, nil
}

func (o *Output) scan() error {
	ents, err := os.ReadDir(o.cfg.Dir)
	if err != nil {
		return fmt.Errorf("recorder: output: %w", err)
	}
	shardRE := regexp.MustCompile(`^` + regexp.QuoteMeta(o.cfg.Room) + `-(\d{6,})\.(tar|safetensors|png)$`)
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") && strings.HasSuffix(name, partialSuffix) {
			o.log.Warn("removing partial file from an interrupted run", slog.String("file", name))
			if err := os.Remove(filepath.Join(o.cfg.Dir, name)); err != nil {
				return fmt.Errorf("recorder: output: %w", err)
			}
			continue
		}
		if m := shardRE.FindStringSubmatch(name); m != nil {
			n, _ := strconv.Atoi(m[1])
			o.next = max(o.next, n+1)
		}
	}
	return nil
}

// Dir is the output directory.
func (o *Output) Dir() string { return o.cfg.Dir }

// Config returns the output's configuration.
func (o *Output) Config() OutputConfig { return o.cfg }

// ChatLine is one line of <room>-chat.jsonl.
type ChatLine struct {
	Time time.Time `json:"time"`
	Peer string    `json:"peer"`
	User string    `json:"user"`
	Text string    `json:"text"`
}

// WriteChat appends a line to the room's chat log. Text over MaxChatText
// bytes is cut at a rune boundary.
func (o *Output) WriteChat(l ChatLine) error {
	b, err := chatJSON(l)
	if err != nil {
		return err
	}
	return o.appendChat(b)
}

// chatJSON is l as a chat log line (without its newline), its text cut
// to MaxChatText bytes at a rune boundary.
func chatJSON(l ChatLine) ([]byte, error) {
	if len(l.Text) > MaxChatText {
		cut := MaxChatText
		for cut > 0 && !utf8.RuneStart(l.Text[cut]) {
			cut--
		}
		l.Text = l.Text[:cut]
	}
	b, err := json.Marshal(l)
	if err != nil {
		return nil, fmt.Errorf("recorder: chat: %w", err)
	}
	return b, nil
}

// appendChat appends a line made by chatJSON to the chat log.
func (o *Output) appendChat(b []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.chat == nil {
		return ErrOutputClosed
	}
	if err := appendLine(o.chat, b); err != nil {
		return fmt.Errorf("recorder: chat: %w", err)
	}
	return nil
}

// ErrOutputClosed: the Output was closed.
var ErrOutputClosed = errors.New("recorder: output closed")

// Shard is one line of manifest.jsonl: a complete shard file.
type Shard struct {
	File    string    `json:"shard"`
	Format  string    `json:"format"`
	Samples []Sample  `json:"samples"`
	Frames  int       `json:"frames"`
	Bytes   int64     `json:"bytes"`
	CRC32   string    `json:"crc32,omitempty"`  // with ChecksumCRC32
	SHA256  string    `json:"sha256,omitempty"` // with ChecksumSHA256
	Sheet   string    `json:"sheet,omitempty"`
	Time    time.Time `json:"time"`
}

// Sample is one clip in a shard.
type Sample struct {
	Key    string `json:"key"`
	Peer   string `json:"peer"`
	User   string `json:"user"`
	Track  string `json:"track"`
	Frames int    `json:"frames"`
}

// reserve hands out the next clip number.
func (o *Output) reserve() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := o.next
	o.next++
	return n
}

// commit appends a shard to the manifest.
func (o *Output) commit(s Shard) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("recorder: manifest: %w", err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.man == nil {
		return ErrOutputClosed
	}
	if err := appendLine(o.man, b); err != nil {
		return fmt.Errorf("recorder: manifest: %w", err)
	}
	if !o.cfg.NoSync {
		if err := o.man.Sync(); err != nil {
			return fmt.Errorf("recorder: manifest: %w", err)
		}
	}
	return nil
}

// Close closes the manifest and the chat log. Clips still open must be
// finished first.
func (o *Output) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.man == nil {
		return nil
	}
	err := errors.Join(o.man.Close(), o.chat.Close())
	o.man, o.chat = nil, nil
	return err
}

// appendLine appends line and a newline to f, opened with O_APPEND, in
// one write, so that concurrent lines stay whole. A write that fails part
// way (a full disk) is cut off again: a torn line would run into the
// next one. The caller serialises appendLine on f.
func appendLine(f *os.File, line []byte) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		if terr := f.Truncate(st.Size()); terr != nil {
			err = errors.Join(err, fmt.Errorf("cutting off the part written: %w", terr))
		}
		return err
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// keyPart makes s safe inside a WebDataset key, which must not contain a dot
// (the loader splits the file name at the first one).
func keyPart(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '-'
	}, s)
}
