//go:build cgo

package recorder

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/client/media"
	"github.com/khadga/khadga/signaling/signalingtest"
	pionmedia "github.com/pion/webrtc/v4/pkg/media"
)

// logWatch passes records on and reports those whose message contains one
// of the watched strings, with the user attribute.
type logWatch struct {
	slog.Handler
	seen  chan string // "message|user"
	attrs []slog.Attr
}

func (h *logWatch) Handle(ctx context.Context, r slog.Record) error {
	user := ""
	for _, a := range h.attrs {
		if a.Key == "user" {
			user = a.Value.String()
		}
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "user" {
			user = a.Value.String()
		}
		return true
	})
	for _, w := range []string{"too many tracks", "track ended", "track arrived", "track stopped", "track refused",
		"sent nothing for the idle timeout", "sends again"} {
		if strings.Contains(r.Message, w) {
			select {
			case h.seen <- w + "|" + user:
			default:
			}
		}
	}
	return h.Handler.Handle(ctx, r)
}
func (h *logWatch) WithAttrs(as []slog.Attr) slog.Handler {
	return &logWatch{Handler: h.Handler.WithAttrs(as), seen: h.seen, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}
func (h *logWatch) WithGroup(g string) slog.Handler {
	return &logWatch{Handler: h.Handler.WithGroup(g), seen: h.seen, attrs: h.attrs}
}

// waitLog waits for "message|user" in w's records, or fails.
func waitLog(t *testing.T, w *logWatch, what string) {
	t.Helper()
	timer := time.NewTimer(e2eTimeout)
	defer timer.Stop()
	for {
		select {
		case got := <-w.seen:
			if got == what {
				return
			}
		case <-timer.C:
			t.Fatalf("no %q in the recorder's log", what)
		}
	}
}

// TestTrackWaitsForASlot: with every slot taken (MaxTracks), a consenting
// peer's track waits, its packets read and dropped, and is recorded once a
// slot frees; it is not turned away for good.
func TestTrackWaitsForASlot(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	dir := t.TempDir()
	w := &logWatch{Handler: testLogger(t).Handler(), seen: make(chan string, 256)}
	rec := startRecorder(t, s, "studio", dir, func(c *Config) { c.MaxTracks = 1; c.NoAudio = true; c.Logger = slog.New(w) })
	_, mallory := joinPeer(t, s, "mallory", "studio", rec.self.Peer)
	_, alice := joinPeer(t, s, "alice", "studio", rec.self.Peer)
	wait := func(what string) { t.Helper(); waitLog(t, w, what) }
	publish := func(r *client.Room, frames int) *client.Publication {
		src, err := media.NewTestPattern(media.PatternConfig{Frames: frames, FPS: 30})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { src.Close() })
		return publishTo(t, r, src, rec.self.Peer)
	}
	mpub := publish(mallory, 30)
	wait("track arrived|mallory")
	apub := publish(alice, 0) // without end: mallory's track may take many seconds to end
	wait("too many tracks|alice")
	// mallory stops: her track ends and frees the slot.
	<-mpub.Done()
	mpub.Close()
	wait("track ended|mallory")
	wait("track arrived|alice")
	deadline := time.Now().Add(e2eTimeout)
	for {
		for _, tr := range rec.Tracks() {
			if tr.Info.User == "alice" {
				return
			}
		}
		select {
		case <-apub.Done():
			t.Fatalf("alice's publication ended before her track was recorded: %v", apub.Err())
		case <-time.After(50 * time.Millisecond): // polling the recorder's report
		}
		if time.Now().After(deadline) {
			t.Fatal("alice consented and a slot freed, but her track is not recorded")
		}
	}
}

// TestIdleTrackFreesItsSlot: mallory's source ends but she never removes
// her track, which then sends nothing: it held the only slot for as long
// as she stayed, and alice waited for ever. It ends for the recorder
// after Config.IdleTimeout, reported as StopIdle, and alice's track takes
// the slot.
func TestIdleTrackFreesItsSlot(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	dir := t.TempDir()
	w := &logWatch{Handler: testLogger(t).Handler(), seen: make(chan string, 256)}
	const idle = time.Second
	rec := startRecorder(t, s, "studio", dir, func(c *Config) {
		c.MaxTracks, c.IdleTimeout, c.NoAudio = 1, idle, true
		c.Logger = slog.New(w)
	})
	_, mallory := joinPeer(t, s, "mallory", "studio", rec.self.Peer)
	_, alice := joinPeer(t, s, "alice", "studio", rec.self.Peer)
	pattern := func(frames int) client.VideoSource { return testPattern(t, frames) }
	// Her source stops for good after 30 frames; the Go client removes
	// the track of a source that ended, so hers only pauses.
	msrc := &pausedSource{VideoSource: pattern(0), after: 30, resume: make(chan struct{}), paused: make(chan struct{})}
	publishTo(t, mallory, msrc, rec.self.Peer)
	waitLog(t, w, "track arrived|mallory")
	publishTo(t, alice, pattern(0), rec.self.Peer)
	waitLog(t, w, "too many tracks|alice")
	<-msrc.paused // her track stays, silent
	silent := time.Now()
	waitLog(t, w, "track ended|mallory")
	if d := time.Since(silent); d < idle*9/10 {
		t.Errorf("mallory's track ended %v after her last frame, before the idle timeout (%v)", d, idle)
	}
	waitLog(t, w, "track arrived|alice")
	rec.stop(t)
	stopped := map[string]string{}
	for _, tr := range rec.Tracks() {
		stopped[tr.Info.User] = tr.Stopped
	}
	if got, ok := stopped["mallory"]; !ok || got != StopIdle {
		t.Errorf("mallory's track stopped for %q (reported: %v), want %q", got, ok, StopIdle)
	}
	if got := stopped["alice"]; got != "" { // reported if it ended before the stop
		t.Errorf("alice's track stopped for %q", got)
	}
}

// TestIdleTrackRecordedAgain: a track that went idle (its source paused)
// gave up its slot; when it sends again it is admitted and recorded
// again, from a key frame. It used to be left unread for good: a user
// whose camera stopped for the idle timeout was never recorded again.
func TestIdleTrackRecordedAgain(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	dir := t.TempDir()
	w := &logWatch{Handler: testLogger(t).Handler(), seen: make(chan string, 256)}
	rec := startRecorder(t, s, "studio", dir, func(c *Config) {
		c.MaxTracks, c.IdleTimeout, c.NoAudio = 1, time.Second, true
		c.Logger = slog.New(w)
	})
	_, alice := joinPeer(t, s, "alice", "studio", rec.self.Peer)
	src := &pausedSource{VideoSource: testPattern(t, 0), after: 30, resume: make(chan struct{})}
	publishTo(t, alice, src, rec.self.Peer)
	waitLog(t, w, "track arrived|alice")
	waitLog(t, w, "sent nothing for the idle timeout|alice")
	first := waitFrames(t, rec, "alice", 30)
	close(src.resume)
	waitLog(t, w, "sends again|alice")
	waitLog(t, w, "track arrived|alice")
	if got := waitFrames(t, rec, "alice", first+30); got < first+30 {
		t.Fatalf("%d frames recorded after the pause, want 30 (%d before it)", got-first, first)
	}
	rec.stop(t)
	var idle, again int
	for _, tr := range rec.Tracks() {
		switch {
		case tr.Info.User != "alice":
		case tr.Stopped == StopIdle && tr.Stats.Frames > 0:
			idle++
		case tr.Stopped == "" && tr.Stats.Frames > 0:
			again++
		}
	}
	if idle != 1 || again != 1 {
		t.Errorf("alice's reports: %d ended idle and %d recorded after it, want one of each: %+v", idle, again, rec.Tracks())
	}
}

// pausedSource sends after frames of its source, then nothing until
// resume is closed, then the rest. paused, if set, is closed when it
// stops.
type pausedSource struct {
	client.VideoSource
	after  int
	resume chan struct{}
	paused chan struct{}
	n      int
}

func (p *pausedSource) NextSample(ctx context.Context) (pionmedia.Sample, error) {
	if p.n == p.after {
		if p.paused != nil {
			close(p.paused)
		}
		select {
		case <-p.resume:
		case <-ctx.Done():
			return pionmedia.Sample{}, ctx.Err()
		}
	}
	p.n++
	return p.VideoSource.NextSample(ctx)
}

// RequestKeyframe passes the recorder's picture-loss reports on.
func (p *pausedSource) RequestKeyframe() {
	if kr, ok := p.VideoSource.(client.KeyframeRequester); ok {
		kr.RequestKeyframe()
	}
}

// testPattern is a 30 fps test pattern of frames frames (0: without end),
// closed when the test ends.
func testPattern(t *testing.T, frames int) client.VideoSource {
	t.Helper()
	src, err := media.NewTestPattern(media.PatternConfig{Frames: frames, FPS: 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}
