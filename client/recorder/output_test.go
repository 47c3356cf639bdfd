package recorder

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testFrame is frame i of a clip: every byte is known, so loaders can be
// checked value by value.
func testFrame(s Size, i int) []byte {
	b := make([]byte, s.W*s.H*3)
	for j := range b {
		b[j] = byte(i*7 + j*3 + j/(s.W*3))
	}
	return b
}

func testTS(i int) int64 { return 1_700_000_000_000_000 + int64(i)*100_000 }

// writeClips writes one clip per entry of lens, frames numbered from 0.
func writeClips(t *testing.T, cfg OutputConfig, lens ...int) (*Output, []Shard) {
	t.Helper()
	o, err := OpenOutput(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var shards []Shard
	for ci, n := range lens {
		c, err := o.StartClip(ClipMeta{Peer: fmt.Sprintf("peer%d", ci), User: "alice", Track: "video0", Codec: "video/VP8",
			FPS: 10, Fit: "crop", ConsentTime: time.Unix(1700000000, 0)})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if err := c.Add(testFrame(cfg.Size, i), testTS(i), Size{640, 480 - 240*(i/3%2)}); err != nil {
				t.Fatal(err)
			}
		}
		sh, err := c.Finish(Drops{Queue: 1, Gap: 2})
		if err != nil {
			t.Fatal(err)
		}
		shards = append(shards, sh)
	}
	return o, shards
}

func testOutputConfig(t *testing.T, f Format) OutputConfig {
	// Tar shards get the default CRC-32, safetensors files SHA-256, so
	// that both checksums are tested.
	sum := ChecksumCRC32
	if f == FormatSafetensors {
		sum = ChecksumSHA256
	}
	return OutputConfig{Dir: t.TempDir(), Room: "lab.one", Format: f, Checksum: sum, Size: Size{W: 12, H: 8}, ClipFrames: 5, Logger: testLogger(t)}
}

func TestTarShards(t *testing.T) {
	cfg := testOutputConfig(t, FormatTar)
	o, shards := writeClips(t, cfg, 5, 3) // a full clip, and a short one whose headers are patched
	o.Close()
	for i, sh := range shards {
		wantN := []int{5, 3}[i]
		path := filepath.Join(cfg.Dir, sh.File)
		if want := fmt.Sprintf("lab.one-%06d.tar", i); sh.File != want {
			t.Errorf("shard %d named %s, want %s", i, sh.File, want)
		}
		key := fmt.Sprintf("lab-one_peer%d_%06d", i, i)
		names, files := readTar(t, path)
		if want := []string{key + ".frames.npy", key + ".ts.npy", key + ".json"}; strings.Join(names, " ") != strings.Join(want, " ") {
			t.Fatalf("tar holds %v, want %v (adjacent, in order)", names, want)
		}
		var meta ClipMeta
		if err := json.Unmarshal(files[key+".json"], &meta); err != nil {
			t.Fatal(err)
		}
		if meta.Frames != wantN || meta.Key != key || meta.User != "alice" || meta.Dropped.Gap != 2 ||
			len(meta.SourceSizes) != min(2, (wantN+2)/3) || meta.SourceSizes[0] != (SizeRun{0, 640, 480}) {
			t.Errorf("metadata %+v", meta)
		}
		if !sumMatches(t, path, sh) || sh.Frames != wantN {
			t.Errorf("manifest checksum %s%s frames %d; want the file's, and %d frames", sh.CRC32, sh.SHA256, sh.Frames, wantN)
		}
		if _, err := os.Stat(filepath.Join(cfg.Dir, sh.Sheet)); err != nil || sh.Sheet == "" {
			t.Errorf("contact sheet %q: %v", sh.Sheet, err)
		}
	}
	if got := readManifest(t, cfg.Dir); len(got) != 2 || got[1].CRC32+got[1].SHA256 != shards[1].CRC32+shards[1].SHA256 {
		t.Errorf("manifest %+v", got)
	}
	checkNoPartials(t, cfg.Dir)
	checkNumpy(t, cfg, []int{5, 3})
}

// npyInfo is what numpy saw in one .npy file.
type npyInfo struct {
	Shape  []int
	DType  string
	C      bool
	MD5    string
	Values []int64
}

// numpyDump has Debian's python3 and numpy, with no help from this package,
// open every tar shard in dir with tarfile, np.load each .npy member, and
// report its shape, dtype, contiguity, an MD5 of its bytes and, for 1-D
// arrays, its values. It returns nil when numpy is missing (and fails the
// test instead in CI, where scripts/setup.sh installs it).
func numpyDump(t *testing.T, dir string) map[string]npyInfo {
	t.Helper()
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import numpy").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("numpy is required in CI (scripts/setup.sh installs python3-numpy): %v", err)
		}
		t.Logf("numpy check skipped: no numpy for %s: %v", py, err)
		return nil
	}
	script := `
import glob, hashlib, io, json, sys, tarfile
import numpy as np
out = {}
for path in sorted(glob.glob(sys.argv[1] + "/*.tar")):
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            if not m.name.endswith(".npy"):
                continue
            a = np.load(io.BytesIO(tf.extractfile(m).read()))
            out[m.name] = {"shape": list(a.shape), "dtype": str(a.dtype), "c": bool(a.flags.c_contiguous),
                           "md5": hashlib.md5(a.tobytes()).hexdigest(), "values": a.tolist() if a.ndim == 1 else None}
print(json.dumps(out))
`
	cmd := exec.Command(py, "-c", script, dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("numpy: %v\n%s", err, stderr.String())
	}
	var got map[string]npyInfo
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("numpy output %q: %v", b, err)
	}
	return got
}

func md5Frames(frames [][]byte) string {
	h := md5.New()
	for _, f := range frames {
		h.Write(f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// checkNumpy checks numpy's view of the clips writeClips wrote.
func checkNumpy(t *testing.T, cfg OutputConfig, lens []int) {
	t.Helper()
	got := numpyDump(t, cfg.Dir)
	if got == nil {
		t.Skip("no numpy")
	}
	for ci, n := range lens {
		key := fmt.Sprintf("%s_peer%d_%06d", keyPart(cfg.Room), ci, ci)
		fr, ts := got[key+".frames.npy"], got[key+".ts.npy"]
		var frames [][]byte
		for i := 0; i < n; i++ {
			frames = append(frames, testFrame(cfg.Size, i))
		}
		if fmt.Sprint(fr.Shape) != fmt.Sprint([]int{n, cfg.Size.H, cfg.Size.W, 3}) || fr.DType != "uint8" || !fr.C ||
			fr.MD5 != md5Frames(frames) {
			t.Errorf("%s: numpy sees %+v", key, fr)
		}
		if fmt.Sprint(ts.Shape) != fmt.Sprint([]int{n}) || ts.DType != "int64" || len(ts.Values) != n {
			t.Fatalf("%s ts: numpy sees %+v", key, ts)
		}
		for i, v := range ts.Values {
			if v != testTS(i) {
				t.Errorf("%s ts[%d] = %d, want %d", key, i, v, testTS(i))
			}
		}
	}
}

func TestSafetensors(t *testing.T) {
	cfg := testOutputConfig(t, FormatSafetensors)
	o, shards := writeClips(t, cfg, 5, 2)
	o.Close()
	for i, sh := range shards {
		n := []int{5, 2}[i]
		path := filepath.Join(cfg.Dir, sh.File)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		tensors, meta := checkSafetensors(t, b)
		want := bytes.Join(func() [][]byte {
			var f [][]byte
			for j := 0; j < n; j++ {
				f = append(f, testFrame(cfg.Size, j))
			}
			return f
		}(), nil)
		if !bytes.Equal(tensors["frames"], want) {
			t.Errorf("%s: frames differ", sh.File)
		}
		ts := tensors["ts"]
		for j := 0; j < n; j++ {
			if v := int64(binary.LittleEndian.Uint64(ts[8*j:])); v != testTS(j) {
				t.Errorf("%s: ts[%d] = %d", sh.File, j, v)
			}
		}
		if meta["user"] != "alice" || meta["frames"] != fmt.Sprint(n) || !strings.Contains(meta["source_sizes"], `"width":640`) {
			t.Errorf("%s: metadata %v", sh.File, meta)
		}
		if !sumMatches(t, path, sh) || sh.SHA256 == "" {
			t.Errorf("%s: manifest checksum does not match the file", sh.File)
		}
	}
	checkNoPartials(t, cfg.Dir)
}

// checkSafetensors parses a file the way any safetensors reader would, with
// nothing but encoding/json, and checks that dtypes, shapes and offsets
// tile the data buffer exactly. It returns each tensor's bytes.
func checkSafetensors(t *testing.T, b []byte) (map[string][]byte, map[string]string) {
	t.Helper()
	if len(b) < 8 {
		t.Fatalf("file of %d bytes", len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if n > uint64(len(b)-8) || (8+n)%8 != 0 {
		t.Fatalf("header length %d in a file of %d bytes (data must start 8-byte aligned)", n, len(b))
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &header); err != nil {
		t.Fatalf("header: %v", err)
	}
	data := b[8+n:]
	var meta map[string]string
	if err := json.Unmarshal(header["__metadata__"], &meta); err != nil {
		t.Fatalf("__metadata__ must map strings to strings: %v", err)
	}
	sizes := map[string]int{"U8": 1, "I64": 8}
	out := map[string][]byte{}
	type span struct{ lo, hi int }
	var spans []span
	for name, raw := range header {
		if name == "__metadata__" {
			continue
		}
		var tt struct {
			DType       string `json:"dtype"`
			Shape       []int  `json:"shape"`
			DataOffsets [2]int `json:"data_offsets"`
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&tt); err != nil {
			t.Fatalf("tensor %s: %v", name, err)
		}
		elems := 1
		for _, d := range tt.Shape {
			elems *= d
		}
		lo, hi := tt.DataOffsets[0], tt.DataOffsets[1]
		if sizes[tt.DType] == 0 || hi-lo != elems*sizes[tt.DType] || lo < 0 || hi > len(data) {
			t.Fatalf("tensor %s: %+v does not fit %d data bytes", name, tt, len(data))
		}
		spans = append(spans, span{lo, hi})
		out[name] = data[lo:hi]
	}
	if want := map[string]string{"frames": "U8", "ts": "I64"}; len(out) != len(want) {
		t.Fatalf("tensors %v", out)
	}
	// The tensors must tile the buffer: no gap, no overlap, nothing after.
	covered := 0
	for covered < len(data) {
		found := false
		for _, s := range spans {
			if s.lo == covered && s.hi > s.lo {
				covered, found = s.hi, true
			}
		}
		if !found {
			t.Fatalf("data buffer not tiled at byte %d of %d", covered, len(data))
		}
	}
	return out, meta
}

func TestOutputRestart(t *testing.T) {
	cfg := testOutputConfig(t, FormatTar)
	o, _ := writeClips(t, cfg, 2)
	o.Close()
	// A killed run leaves a partial file; the next run removes it and
	// numbers on after the existing shard.
	stale := filepath.Join(cfg.Dir, ".lab.one-000001.tar.partial")
	if err := os.WriteFile(stale, []byte("half a shard"), 0o644); err != nil {
		t.Fatal(err)
	}
	o2, shards := writeClips(t, cfg, 1)
	defer o2.Close()
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale partial file still there: %v", err)
	}
	if shards[0].File != "lab.one-000001.tar" {
		t.Errorf("after restart the shard is %s, want lab.one-000001.tar", shards[0].File)
	}
	if got := readManifest(t, cfg.Dir); len(got) != 2 {
		t.Errorf("manifest has %d lines, want 2", len(got))
	}
}

func TestEmptyClipWritesNothing(t *testing.T) {
	cfg := testOutputConfig(t, FormatTar)
	o, err := OpenOutput(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	c, err := o.StartClip(ClipMeta{Peer: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Finish(Drops{}); !errors.Is(err, ErrEmptyClip) {
		t.Fatalf("finish empty clip: %v", err)
	}
	ents, _ := os.ReadDir(cfg.Dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), "000000") {
			t.Errorf("empty clip left %s", e.Name())
		}
	}
}

func TestChatLog(t *testing.T) {
	cfg := testOutputConfig(t, FormatTar)
	o, err := OpenOutput(cfg)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("é", MaxChatText) // 2 bytes a rune: cut in half
	for _, text := range []string{"hello\nworld", long} {
		if err := o.WriteChat(ChatLine{Time: time.Unix(1700000000, 0).UTC(), Peer: "p1", User: "bob", Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	o.Close()
	f, err := os.Open(filepath.Join(cfg.Dir, "lab.one-chat.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var lines []ChatLine
	for sc.Scan() {
		var l ChatLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 2 || lines[0].Text != "hello\nworld" || lines[0].User != "bob" || len(lines[1].Text) != MaxChatText {
		t.Errorf("chat log: %d lines, first %+v, second %d bytes", len(lines), lines[0], len(lines[1].Text))
	}
}

func TestContactSheet(t *testing.T) {
	s := newSheet(Size{224, 224}, 150)
	for i := 0; i < 150; i++ {
		s.add(i, testFrame(Size{224, 224}, i), Size{224, 224}, int64(i)*100_000)
	}
	b, err := s.png()
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	// 150 frames, one in ten kept: 15 cells of 112×112 in 4 columns.
	if got := img.Bounds().Size(); got.X != 4*114+2 || got.Y != 4*(112+sheetCaption+2)+2 {
		t.Errorf("sheet is %v", got)
	}
	if len(s.frames) != 15 || s.frames[1] != 10 || s.times[1] != 1_000_000 {
		t.Errorf("sheet kept %d frames: %v at %v", len(s.frames), s.frames, s.times)
	}
	// Each thumbnail pixel is the mean of its 2×2 block (within one, as
	// libyuv rounds): check frame 10's (second cell) along its diagonal.
	f10 := testFrame(Size{224, 224}, 10)
	for d := 0; d < 112; d += 7 {
		r, g, b, _ := img.At(2+114+d, 2+d).RGBA()
		for c, got := range []uint32{r >> 8, g >> 8, b >> 8} {
			at := func(x, y int) int { return int(f10[(y*224+x)*3+c]) }
			want := uint32(at(2*d, 2*d)+at(2*d+1, 2*d)+at(2*d, 2*d+1)+at(2*d+1, 2*d+1)+2) / 4
			if got+1 < want || got > want+1 {
				t.Fatalf("thumbnail of frame 10 at (%d,%d) channel %d: %d, want %d", d, d, c, got, want)
			}
		}
	}
	// The caption is drawn: some pure white pixels below the first thumbnail.
	white := 0
	for y := 2 + 112; y < 2+112+sheetCaption; y++ {
		for x := 2; x < 114; x++ {
			if r, g, b, _ := img.At(x, y).RGBA(); r == 0xffff && g == 0xffff && b == 0xffff {
				white++
			}
		}
	}
	if white < 20 {
		t.Errorf("caption has %d white pixels", white)
	}
}

func TestOutputConfigValidate(t *testing.T) {
	err := (&OutputConfig{Room: "../x", Size: Size{0, 5}, ClipFrames: 0}).Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"directory", "room", "frame size", "clip frames"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

// TestConfigRooms: several rooms go to OUT/ROOM, one room to OUT; a room
// listed twice, a bad name and too many rooms are each named.
func TestConfigRooms(t *testing.T) {
	c := Config{Server: "http://127.0.0.1:1", Token: "x", Out: "/rec", Rooms: []string{"north", "south"}}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if dir := c.outputConfig("south").Dir; dir != filepath.Join("/rec", "south") {
		t.Fatalf("south writes to %s, want /rec/south", dir)
	}
	if dir := (&Config{Out: "/rec", Rooms: []string{"lab"}}).outputConfig("lab").Dir; dir != "/rec" {
		t.Fatalf("a single room writes to %s, want /rec", dir)
	}
	c.Rooms = []string{"north", "../up", "north"}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), `room "north" listed twice`) || !strings.Contains(err.Error(), "../up") {
		t.Fatalf("rooms %q: %v", c.Rooms, err)
	}
	c.Rooms = make([]string, MaxRooms+1)
	for i := range c.Rooms {
		c.Rooms[i] = fmt.Sprintf("r%d", i)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d rooms: at most %d", MaxRooms+1, MaxRooms)) {
		t.Fatalf("%d rooms: %v", len(c.Rooms), err)
	}
}

func readTar(t *testing.T, path string) ([]string, map[string][]byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	files := map[string][]byte{}
	var want int64 // bytes of headers and padded data so far
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		names = append(names, h.Name)
		files[h.Name] = b
		want += 512 + (h.Size+511)/512*512
	}
	// Nothing follows the two zero blocks that end the archive (a file
	// preallocated for a full clip is cut to what was written).
	if st, err := f.Stat(); err != nil || st.Size() != want+1024 {
		t.Fatalf("%s: %d bytes, want %d: %v", path, st.Size(), want+1024, err)
	}
	return names, files
}

func readManifest(t *testing.T, dir string) []Shard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "manifest.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []Shard
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var s Shard
		if err := json.Unmarshal(l, &s); err != nil {
			t.Fatalf("manifest line %q: %v", l, err)
		}
		out = append(out, s)
	}
	return out
}

// sumMatches reports whether the manifest line sh has one checksum, and it
// is the file's.
func sumMatches(t *testing.T, path string, sh Shard) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sh.SHA256 != "" {
		s := sha256.Sum256(b)
		return sh.CRC32 == "" && sh.SHA256 == hex.EncodeToString(s[:])
	}
	return sh.CRC32 == fmt.Sprintf("%08x", crc32.ChecksumIEEE(b))
}

func checkNoPartials(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), partialSuffix) {
			t.Errorf("partial file left: %s", e.Name())
		}
	}
}

// TestContactSheetSmallAndLarge: a clip of three big frames makes a sheet
// one row of three cells, its thumbnails three halvings down and within
// two levels of each 8×8 block's mean; a second sheet reuses the canvas
// and shows none of the first.
func TestContactSheetSmallAndLarge(t *testing.T) {
	full := Size{520, 300} // halved thrice to 65×37
	for round := range 2 {
		s := newSheet(full, 3)
		frames := make([][]byte, 3)
		for i := range frames {
			frames[i] = testFrame(full, i+5*round)
			s.add(i, frames[i], full, int64(i)*100_000)
		}
		b, err := s.png()
		s.release()
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if got := img.Bounds().Size(); got.X != 3*67+2 || got.Y != 37+sheetCaption+2+2 {
			t.Fatalf("sheet is %v", got)
		}
		for i, f := range frames {
			for _, p := range [][2]int{{0, 0}, {30, 20}, {64, 36}} {
				r, _, _, _ := img.At(2+67*i+p[0], 2+p[1]).RGBA()
				sum := 0
				for y := 0; y < 8; y++ {
					for x := 0; x < 8; x++ {
						sum += int(f[((8*p[1]+y)*full.W+8*p[0]+x)*3])
					}
				}
				if d := int(r>>8) - (sum+32)/64; d < -2 || d > 2 {
					t.Errorf("round %d cell %d at %v: %d, block mean %d", round, i, p, r>>8, (sum+32)/64)
				}
			}
		}
	}
}

// TestTarShardsLarge writes clips of more than a direct-I/O chunk, full
// and short, with direct I/O (where the file system has it) and without:
// every frame byte, the checksum (summed while writing for the full clip,
// read back for the short one, whose head is rewritten) and the file's
// exact length hold both ways.
func TestTarShardsLarge(t *testing.T) {
	for _, direct := range []bool{true, false} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) {
			defer func(v bool) { useDirectIO = v }(useDirectIO)
			useDirectIO = direct
			cfg := testOutputConfig(t, FormatTar)
			cfg.Size, cfg.ClipFrames = Size{224, 224}, 12 // 1.8 MB of frames a full clip
			probe := filepath.Join(cfg.Dir, "probe")
			if err := os.WriteFile(probe, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if d := newDirectWriter(probe, 0, nil); d != nil {
				d.close()
				t.Logf("direct I/O in use")
			} else if direct {
				t.Logf("no direct I/O here: both runs take the buffered path")
			}
			os.Remove(probe)
			o, shards := writeClips(t, cfg, 12, 7)
			o.Close()
			for i, sh := range shards {
				path := filepath.Join(cfg.Dir, sh.File)
				key := fmt.Sprintf("lab-one_peer%d_%06d", i, i)
				_, files := readTar(t, path)
				npy := files[key+".frames.npy"]
				n := []int{12, 7}[i]
				if len(npy) != npyHeaderLen+n*224*224*3 {
					t.Fatalf("%s: frames.npy of %d bytes", sh.File, len(npy))
				}
				for j := 0; j < n; j++ {
					off := npyHeaderLen + j*224*224*3
					if !bytes.Equal(npy[off:off+224*224*3], testFrame(cfg.Size, j)) {
						t.Fatalf("%s: frame %d differs", sh.File, j)
					}
				}
				if !sumMatches(t, path, sh) {
					t.Errorf("%s: manifest checksum %s%s is not the file's", sh.File, sh.CRC32, sh.SHA256)
				}
				if st, err := os.Stat(path); err != nil || st.Size() != sh.Bytes {
					t.Errorf("%s: %v bytes on disk, manifest says %d (%v)", sh.File, st.Size(), sh.Bytes, err)
				}
			}
			checkNoPartials(t, cfg.Dir)
		})
	}
}

// TestDirectWriterFallsBack: when a direct write fails, that chunk and the
// rest of the stream go through the plain handle, byte for byte.
func TestDirectWriterFallsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := newDirectWriter(path, 0, f)
	if d == nil {
		t.Skip("no direct I/O on this file system")
	}
	want := make([]byte, 3*directChunk+777)
	for i := range want {
		want[i] = byte(i * 13)
	}
	if _, err := d.Write(want[:directChunk+5]); err != nil { // one direct chunk
		t.Fatal(err)
	}
	d.f.Close() // the next direct write fails
	if _, err := d.Write(want[directChunk+5:]); err != nil {
		t.Fatal(err)
	}
	if end, err := d.finish(); err != nil || end != int64(len(want)) {
		t.Fatalf("finish: %d, %v", end, err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("file of %d bytes differs from the %d written (%v)", len(got), len(want), err)
	}
}

// TestSafetensorsLargeHeader: a clip whose source changed size at every
// frame has a header over the 64 KiB reserved for it; the data moves
// behind it, still 8-byte aligned, and the checksum is the moved file's.
func TestSafetensorsLargeHeader(t *testing.T) {
	cfg := testOutputConfig(t, FormatSafetensors)
	cfg.Size, cfg.ClipFrames = Size{2, 2}, 3000
	o, err := OpenOutput(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	c, err := o.StartClip(ClipMeta{Peer: "p", User: "u", Track: "t", Codec: "video/VP8"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 2500
	for i := 0; i < n; i++ {
		if err := c.Add(testFrame(cfg.Size, i), testTS(i), Size{640 + 2*i, 480}); err != nil {
			t.Fatal(err)
		}
	}
	sh, err := c.Finish(Drops{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cfg.Dir, sh.File)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if hl := binary.LittleEndian.Uint64(b); hl+8 <= stReserve {
		t.Fatalf("header of %d bytes: the test wants one over the reserve", hl)
	}
	tensors, meta := checkSafetensors(t, b)
	if len(tensors["frames"]) != n*12 || !bytes.Equal(tensors["frames"][12*7:12*8], testFrame(cfg.Size, 7)) {
		t.Errorf("frames of %d bytes, or frame 7 differs", len(tensors["frames"]))
	}
	if !strings.Contains(meta["source_sizes"], fmt.Sprintf(`"width":%d`, 640+2*(n-1))) {
		t.Errorf("the last size run is missing from the metadata")
	}
	if !sumMatches(t, path, sh) || sh.Bytes != int64(len(b)) {
		t.Errorf("manifest checksum or size (%d) is not the file's (%d bytes)", sh.Bytes, len(b))
	}
	checkNoPartials(t, cfg.Dir)
}
