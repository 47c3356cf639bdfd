//go:build cgo

package recorder

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/client/media"
	"github.com/khadga/khadga/client/media/opus"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// alignPy has numpy check that each clip's audio lines up with its frames.
// alice's tone beeps for beep_ms from the capture of every frame whose
// counter (the test pattern's top strip) is a multiple of every; for each
// such frame in a clip, the beep's onset in KEY.audio.npy, found by its
// envelope, must be at that frame's ts, counted from AudioMeta.StartUS at
// 16 kHz. It prints, per clip, the sync mode and the offsets in ms. (About
// 6 ms is Opus' own delay: the encoder looks ahead.)
const alignPy = `
import io, json, sys, glob, tarfile
import numpy as np
every, beep_ms = int(sys.argv[2]), int(sys.argv[3])
out = []
for path in sorted(glob.glob(sys.argv[1] + "/*.tar")):
    with tarfile.open(path) as tf:
        m = {x.name.split(".", 1)[1]: tf.extractfile(x).read() for x in tf.getmembers()}
    frames = np.load(io.BytesIO(m["frames.npy"]))
    ts = np.load(io.BytesIO(m["ts.npy"]))
    audio = np.load(io.BytesIO(m["audio.npy"]))
    meta = json.loads(m["json"])
    a = meta["audio"]
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.shape[0] == a["samples"], (audio.dtype, audio.shape, a)
    assert a["start_us"] == int(ts[0]) and a["rate"] == 16000
    # The counter: 16 blocks of 16 px in the top row, most significant first.
    bits = frames[:, 8, 8:256:16, :].mean(axis=2) > 128
    counters = (bits * (1 << np.arange(15, -1, -1))).sum(axis=1)
    # Onsets: 1 ms envelope above 0.05 after 20 ms below it.
    env = np.abs(audio[: len(audio) // 16 * 16]).reshape(-1, 16).max(axis=1)
    loud = env > 0.05
    onsets = [i for i in range(1, len(loud)) if loud[i] and not loud[max(0, i - 20) : i].any()]
    offsets = []
    for c, t in zip(counters, ts):
        if c % every:
            continue
        at_ms = (t - a["start_us"]) / 1000.0
        if at_ms < 20 or at_ms + beep_ms > len(loud):
            continue  # too near the clip's edges to tell an onset
        near = [o - at_ms for o in onsets if abs(o - at_ms) < 1000 * every / 60]
        offsets.append(min(near, key=abs) if near else None)
    out.append({"sync": a["sync"], "missing": a["missing"], "samples": a["samples"], "offsets": offsets})
print(json.dumps(out))
`

// TestE2EAudioAlignedWithFrames: alice sends the test pattern (30 fps) and
// a tone that beeps on every 15th frame, both to the recorder with
// consent; the recorder writes each clip's audio as 16 kHz float32 beside
// its frames, and numpy finds every beep where its frame is, once the
// sender reports have come.
func TestE2EAudioAlignedWithFrames(t *testing.T) {
	const every, beep = 15, 100 * time.Millisecond
	s := signalingtest.Start(t, signalingtest.Options{})
	dir := t.TempDir()
	rec := startRecorder(t, s, "studio", dir, func(c *Config) {
		c.FPS, c.Size, c.ClipFrames = -1, Size{320, 240}, 60
	})
	_, alice := joinPeer(t, s, "alice", "studio", rec.self.Peer)

	video, err := media.NewTestPattern(media.PatternConfig{Frames: 300, FPS: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer video.Close()
	period := time.Second / 30 * every
	tone, err := opus.NewTone(opus.ToneConfig{Freq: 1000, On: func(at time.Time) bool {
		start := video.Started()
		return !start.IsZero() && !at.Before(start) && at.Sub(start)%period < beep
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer tone.Close()
	vpub, err := alice.PublishVideo(video)
	if err != nil {
		t.Fatal(err)
	}
	defer vpub.Close()
	apub, err := alice.PublishAudio(tone)
	if err != nil {
		t.Fatal(err)
	}
	defer apub.Close()
	for _, pub := range []*client.Publication{apub, vpub} {
		if err := pub.SendTo(rec.self.Peer, client.ConsentToRecording()); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-vpub.Done():
	case <-time.After(e2eTimeout):
		t.Fatal("the video did not end")
	}
	waitFrames(t, rec, "alice", 299)
	rec.stop(t)

	py := exec.Command("/usr/bin/python3", "-c", alignPy, dir, "15", "100")
	var stderr bytes.Buffer
	py.Stderr = &stderr
	b, err := py.Output()
	if err != nil {
		t.Fatalf("numpy: %v\n%s", err, stderr.String())
	}
	var clips []struct {
		Sync    string
		Missing int
		Samples int
		Offsets []*float64
	}
	if err := json.Unmarshal(b, &clips); err != nil {
		t.Fatalf("numpy printed %q: %v", b, err)
	}
	checked := 0
	for i, c := range clips {
		t.Logf("clip %d: sync %s, %d of %d samples missing, beep offsets (ms) %v", i, c.Sync, c.Missing, c.Samples, deref(c.Offsets))
		if c.Sync != "rtcp" {
			continue
		}
		for _, o := range c.Offsets {
			switch {
			case o == nil:
				t.Errorf("clip %d: a marked frame has no beep near it", i)
			case *o < -20 || *o > 20:
				t.Errorf("clip %d: a beep %.1f ms from its frame, want within 20 ms", i, *o)
			default:
				checked++
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d beeps checked in clips placed by sender reports (of %d clips)", checked, len(clips))
	}
	if _, err := os.Stat(filepath.Join(dir, "studio-consent.jsonl")); err != nil {
		t.Fatal(err)
	}
}

func deref(v []*float64) []any {
	out := make([]any, len(v))
	for i, p := range v {
		if p == nil {
			out[i] = nil
		} else {
			out[i] = *p
		}
	}
	return out
}
