package networks_test

import (
	"archive/tar"
	"bytes"
	binenc "encoding/binary"
	"errors"
	"image"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/khadga/khadga/client/media"
	"github.com/khadga/khadga/client/recorder"
)

// lossyFile is what alice sends across the lossy path.
const lossyFile = 20 << 20

// patternFrames is how much test pattern bob sends the recorder.
const patternFrames = 150

// TestLossyPath is topology 5: alice's router drops 5% of what it
// forwards, both ways, at random. Chat arrives, a 20 MiB file arrives
// intact, and the recorder, which sits behind the same router, writes no
// damaged frame of the video bob sends it: every frame it keeps is a test
// pattern frame it can name, and matches that frame.
func TestLossyPath(t *testing.T) {
	t.Parallel()
	w := newWorld(t, "t5")
	a, b := w.addSite("a", eim, lossy), w.addSite("b", eim, "")
	s := w.startServer("alice", "bob")
	r := s.call(t, a, b, callOpts{room: "lossy", fileSize: lossyFile})
	record(t, 5, "5% loss at alice's router", r, s.turn())

	out := t.TempDir()
	rec := start(t, a.host, "khadga-recorder", labEnv("KHADGA_TOKEN="+s.token(t, "rec", "lossy")),
		binary(t, "khadga-recorder"), "--server", serverURL, "--room", "lossy", "--out", out,
		"--fps", "-1", "--size", "320x240", "--fit", "stretch", "--clip-frames", "30", "--no-sync")
	rec.waitLine(`msg=recording `)
	bob := s.peer(t, b, "bob", "video", "--room", "lossy", "--pattern", "--frames", "150", "--to", "rec", "--consent-recording")
	bob.waitLine(`sending video to rec`)
	bob.waitLineFor(`sent \d+ frames`, 2*waitTimeout)
	if code := bob.wait(); code != 0 {
		t.Fatalf("khadga-peer video exited %d", code)
	}
	rec.stop()
	rec.waitLine(`msg="track ended"`)
	t.Logf("recorder: %s", rec.waitLine(`msg="track ended".*`)[0])
	frames, low := checkRecording(t, out)
	t.Logf("RESULT topology 5 recorder: %d of %d frames written, none damaged (lowest luma PSNR %.1f dB)", frames, patternFrames, low)
	if frames < patternFrames/3 {
		t.Errorf("only %d of %d frames written", frames, patternFrames)
	}
}

// token gets an access token for a bot through the running server's
// admin socket (khadga token).
func (s *server) token(t *testing.T, user, room string) string {
	t.Helper()
	out, err := exec.Command(binary(t, "khadga"), "token", "--data", filepath.Join(s.dir, "data"),
		"--user", user, "--role", "recorder", "--room", room, "--ttl", "1h").Output()
	if err != nil {
		t.Fatalf("khadga token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// minPSNR separates intact frames from damaged ones: VP8 at the
// pattern's bitrate gives 31 dB and more against the source, while a
// frame decoded without a lost reference shows blocks of the wrong
// picture, far below.
const minPSNR = 25

// checkRecording reads every frame of the recorder's shards in dir and
// checks each against the test pattern: its frame counter must read, and
// its luma must match the pattern frame of that number at minPSNR or
// more. It returns the frames and the lowest PSNR.
func checkRecording(t *testing.T, dir string) (int, float64) {
	t.Helper()
	const w, h = 320, 240
	paths, _ := filepath.Glob(filepath.Join(dir, "*.tar"))
	ref := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	n, low := 0, math.Inf(1)
	for _, p := range paths {
		for _, frame := range shardFrames(t, p, w*h*3) {
			pic := recorder.RGBToI420(frame, w, h)
			got := &image.YCbCr{Y: pic.Y, Cb: pic.U, Cr: pic.V, YStride: pic.YStride, CStride: pic.UStride,
				SubsampleRatio: image.YCbCrSubsampleRatio420, Rect: image.Rect(0, 0, w, h)}
			num, ok := media.ReadCounter(got)
			if !ok {
				t.Errorf("%s: frame %d has no readable counter: damaged", filepath.Base(p), n)
				n++
				continue
			}
			media.DrawTestPattern(ref, num)
			q := psnr(got.Y, ref.Y)
			low = math.Min(low, q)
			if q < minPSNR {
				t.Errorf("%s: frame %d (pattern frame %d): luma PSNR %.1f dB, want >= %d: damaged", filepath.Base(p), n, num, q, minPSNR)
			}
			n++
		}
	}
	return n, low
}

// shardFrames returns the frames of a shard's .frames.npy, each size bytes.
func shardFrames(t *testing.T, path string, size int) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hd, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s: no .frames.npy", path)
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if !strings.HasSuffix(hd.Name, ".frames.npy") {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		data := npyData(t, b)
		var out [][]byte
		for ; len(data) >= size; data = data[size:] {
			out = append(out, data[:size])
		}
		return out
	}
}

// npyData skips a NumPy v1 header (magic, version, 2-byte header length).
func npyData(t *testing.T, b []byte) []byte {
	t.Helper()
	if len(b) < 10 || !bytes.HasPrefix(b, []byte("\x93NUMPY")) {
		t.Fatal("not a .npy file")
	}
	hl := int(binenc.LittleEndian.Uint16(b[8:10]))
	if len(b) < 10+hl {
		t.Fatal("short .npy header")
	}
	return b[10+hl:]
}

func psnr(a, b []byte) float64 {
	var se float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		se += d * d
	}
	if se == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(255*255/(se/float64(len(a))))
}
