//go:build cgo

package recorder

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/client/media"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// garbageSource is a hostile peer's camera: VP8 key frames that declare
// the largest picture the recorder takes (4096×2304) followed by 20 kB
// of random bytes, 60 a second, without end. libvpx takes 8 to 15 ms of
// CPU for each here (more than for a 1080p camera's frame) before it
// refuses most of them; those it decodes take over 100 ms.
type garbageSource struct{ rng *rand.Rand }

func (g *garbageSource) MimeType() string { return media.MimeTypeVP8 }

func (g *garbageSource) NextSample(ctx context.Context) (pmedia.Sample, error) {
	if err := ctx.Err(); err != nil {
		return pmedia.Sample{}, err
	}
	f := make([]byte, 20_000)
	for i := range f {
		f[i] = byte(g.rng.Uint32())
	}
	// Frame tag (RFC 6386 section 9.1): key frame, version 0, shown, the
	// first partition a tenth of the frame; start code; 4096 × 2304.
	tag := uint32(1<<4 | (len(f)/10)<<5)
	f[0], f[1], f[2] = byte(tag), byte(tag>>8), byte(tag>>16)
	copy(f[3:], []byte{0x9d, 0x01, 0x2a, 0x00, 0x10, 0x00, 0x09})
	return pmedia.Sample{Data: f, Duration: time.Second / 60}, nil
}

// TestCPUBudgetStopsAHostileTrack: a consenting peer sends garbage key
// frames of the largest picture, which cost libvpx over half a core,
// while another peer's camera records. The hostile track is stopped once it
// used its budget; the honest track, which takes a few percent of a
// core, loses no frame and is not stopped.
func TestCPUBudgetStopsAHostileTrack(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	dir := t.TempDir()
	w := &logWatch{Handler: testLogger(t).Handler(), seen: make(chan string, 256)}
	// A small budget, so that mallory goes over it even on a machine so
	// loaded that her thread gets a fraction of a core (the default's
	// margin over honest streams is BenchmarkTrackCPU's).
	const budget, window = 0.2, 2 * time.Second
	limit := time.Duration(budget * float64(window))
	rec := startRecorder(t, s, "studio", dir, func(c *Config) {
		c.NoAudio = true
		c.CPUBudget, c.BudgetWindow = budget, window
		c.Logger = slog.New(w)
	})
	_, alice := joinPeer(t, s, "alice", "studio", rec.self.Peer)
	_, mallory := joinPeer(t, s, "mallory", "studio", rec.self.Peer)

	const frames = 240 // 8 s at 30 fps
	src, err := media.NewTestPattern(media.PatternConfig{Width: 640, Height: 480, Frames: frames, FPS: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	apub := publishTo(t, alice, src, rec.self.Peer)
	waitLog(t, w, "track arrived|alice")
	mpub := publishTo(t, mallory, &garbageSource{rng: rand.New(rand.NewPCG(1, 2))}, rec.self.Peer)
	waitLog(t, w, "track stopped|mallory")
	if apub.Frames() >= frames {
		t.Fatalf("alice's publication had ended before mallory's track was stopped: nothing shown")
	}
	sentAfter := mpub.Frames()

	select {
	case <-apub.Done():
	case <-time.After(e2eTimeout):
		t.Fatal("alice's publication did not end")
	}
	// The builder holds the last frame until a next packet that never comes.
	waitFrames(t, rec, "alice", frames-1)
	if mpub.Frames() <= sentAfter {
		t.Errorf("mallory sent no frame after her track was stopped (%d): nothing shows they were dropped", sentAfter)
	}
	rec.stop(t)

	var got map[string]TrackReport = map[string]TrackReport{}
	for _, tr := range rec.Tracks() {
		if _, dup := got[tr.Info.User]; dup {
			t.Errorf("%s's track reported twice", tr.Info.User)
		}
		got[tr.Info.User] = tr
	}
	a, m := got["alice"], got["mallory"]
	t.Logf("alice: %+v; mallory: %+v, stopped %q; mallory sent %d frames", a.Stats, m.Stats, m.Stopped, mpub.Frames())
	if m.Stopped != StopCPUBudget {
		t.Errorf("mallory's track stopped for %q, want %q", m.Stopped, StopCPUBudget)
	}
	if m.Stats.CPU < limit || m.Stats.CPU > limit+window {
		t.Errorf("mallory's track used %v of CPU, want its budget, %v, and at most a window more", m.Stats.CPU, limit)
	}
	if m.Stats.Frames >= mpub.Frames() {
		t.Errorf("the recorder took %d of mallory's %d frames: none dropped after the stop", m.Stats.Frames, mpub.Frames())
	}
	if a.Stopped != "" {
		t.Errorf("alice's track stopped: %q", a.Stopped)
	}
	if a.Stats.Frames < frames-2 || a.Stats.Decoded != a.Stats.Frames || a.Stats.Dropped != (Drops{}) || a.Stats.Written != a.Stats.Kept {
		t.Errorf("alice's track: %+v; want %d frames, all decoded, none dropped, every kept frame written", a.Stats, frames)
	}
	if want := int64(frames / 6); a.Stats.Kept < want-2 || a.Stats.Kept > want+2 {
		t.Errorf("alice: %d frames kept at 5 fps of %d at 30, want %d ± 2", a.Stats.Kept, frames, want)
	}
	// Her frames took 8 s: her average share of a core.
	if share := a.Stats.CPU.Seconds() / (frames / 30.0); share <= 0 || share > budget/2 {
		t.Errorf("alice's track took %.3f of a core on average, want some and well under the budget, %g", share, budget)
	}
}

// TestWaitingTracksBounded: with every slot taken, tracks wait for one up
// to MaxWaiting, and at most a peer's share of the slots of each peer; a
// track past either is refused and reported, and a track of another peer
// still waits.
func TestWaitingTracksBounded(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	dir := t.TempDir()
	w := &logWatch{Handler: testLogger(t).Handler(), seen: make(chan string, 256)}
	rec := startRecorder(t, s, "studio", dir, func(c *Config) {
		c.MaxTracks, c.MaxWaiting = 1, 2 // one slot; one track of a peer waits
		c.NoAudio = true
		c.Logger = slog.New(w)
	})
	pattern := func(frames int) client.VideoSource { return testPattern(t, frames) }
	_, mallory := joinPeer(t, s, "mallory", "studio", rec.self.Peer)
	_, alice := joinPeer(t, s, "alice", "studio", rec.self.Peer)
	_, bob := joinPeer(t, s, "bob", "studio", rec.self.Peer)
	_, carol := joinPeer(t, s, "carol", "studio", rec.self.Peer)

	publishTo(t, mallory, pattern(0), rec.self.Peer)
	waitLog(t, w, "track arrived|mallory")
	publishTo(t, alice, pattern(0), rec.self.Peer)
	waitLog(t, w, "too many tracks|alice") // waits
	publishTo(t, alice, pattern(0), rec.self.Peer)
	waitLog(t, w, "track refused|alice") // her share of waiting tracks is one
	publishTo(t, bob, pattern(0), rec.self.Peer)
	waitLog(t, w, "too many tracks|bob") // waits: two wait
	publishTo(t, carol, pattern(0), rec.self.Peer)
	waitLog(t, w, "track refused|carol") // MaxWaiting

	refused := map[string]int{}
	for _, tr := range rec.Tracks() {
		if tr.Stopped == StopTooManyWaiting {
			refused[tr.Info.User]++
			if tr.Stats != (TrackStats{}) || tr.Info.Codec != "video/VP8" {
				t.Errorf("refused track reported as %+v", tr)
			}
		}
	}
	if refused["alice"] != 1 || refused["carol"] != 1 || len(refused) != 2 {
		t.Errorf("refused tracks by user %v, want one of alice's and carol's", refused)
	}

	// Recording the waiting tracks once a slot frees is
	// TestTrackWaitsForASlot's. Waiting ends when the recorder stops, and
	// leaves no count behind.
	rec.stop(t)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.waiting != 0 || len(rec.waitingPer) != 0 {
		t.Errorf("after the recorder stopped, %d tracks wait (by peer %v)", rec.waiting, rec.waitingPer)
	}
}
