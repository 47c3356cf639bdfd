//go:build cgo

package recorder

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/client/media"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// e2eTimeout bounds every wait; generous for a slow, shared CI machine.
const e2eTimeout = 60 * time.Second

// loopbackEngine lets pion use 127.0.0.1 only.
func loopbackEngine() webrtc.SettingEngine {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	return se
}

// runningRecorder is a Recorder running in the background.
type runningRecorder struct {
	*Recorder
	self   proto.Member
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returns, with err set
	err    error
}

// stop ends the recording (as SIGINT would) and waits for Run to return.
func (r *runningRecorder) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Fatalf("recorder: %v", r.err)
		}
	case <-time.After(e2eTimeout):
		t.Fatal("recorder did not stop")
	}
}

// startRecorder mints a recorder token for the rooms (room, or those edit
// sets, as `khadga token` will) unless edit sets one, and runs a Recorder
// into dir.
func startRecorder(t *testing.T, s *signalingtest.Server, room, dir string, edit func(*Config)) *runningRecorder {
	t.Helper()
	cfg := Config{Server: s.URL, Rooms: []string{room}, Out: dir, NoSync: true, Logger: testLogger(t),
		ClientOptions: []client.Option{client.WithSettingEngine(loopbackEngine())}}
	if edit != nil {
		edit(&cfg)
	}
	if cfg.Token == "" {
		tok, _, err := s.Keys().IssueAccess(auth.Claims{User: "rec", Role: proto.RoleRecorder, Rooms: cfg.Rooms}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Token = tok
	}
	rec, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningRecorder{Recorder: rec, cancel: cancel, done: make(chan struct{})}
	ready := make(chan proto.Member, 1)
	go func() {
		defer close(r.done)
		r.err = rec.Run(ctx, func(m proto.Member) { ready <- m })
	}()
	select {
	case r.self = <-ready:
	case <-r.done:
		t.Fatalf("recorder: %v", r.err)
	case <-time.After(e2eTimeout):
		t.Fatal("recorder did not join")
	}
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// joinPeer signs a user in, joins room and waits until the peer connection
// to peer is up.
func joinPeer(t *testing.T, s *signalingtest.Server, user, room, peer string, opts ...client.Option) (*client.Client, *client.Room) {
	t.Helper()
	s.Register(t, user, "correct horse battery")
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	opts = append([]client.Option{client.WithSettingEngine(loopbackEngine()), client.WithLogger(testLogger(t))}, opts...)
	c, err := client.Dial(ctx, s.URL, client.Credentials{Username: user, Password: "correct horse battery"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r, err := c.Join(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case ev := <-r.Events():
			if pc, ok := ev.(*client.PeerConnected); ok && pc.Member.Peer == peer {
				if pc.Member.Role != proto.RoleRecorder {
					t.Fatalf("recorder listed with role %q", pc.Member.Role)
				}
				return c, r
			}
		case <-ctx.Done():
			t.Fatalf("%s: no connection to the recorder", user)
		}
	}
}

// waitFrames waits until the recorder has received at least n frames from
// user's tracks, or until none has come for quietFor (frames lost for good
// never come). It polls the recorder's counters: frames travel in real
// time, there is no event to wait on.
func waitFrames(t *testing.T, r *runningRecorder, user string, n int64) int64 {
	t.Helper()
	const quietFor = 2 * time.Second
	deadline := time.Now().Add(e2eTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last int64
	lastChange := time.Now()
	for range tick.C {
		var got int64
		for _, tr := range r.Tracks() {
			if tr.Info.User == user {
				got += tr.Stats.Frames
			}
		}
		if got != last {
			last, lastChange = got, time.Now()
		}
		if got >= n || time.Since(lastChange) > quietFor || time.Now().After(deadline) {
			return got
		}
	}
	return last
}

// patternPicture is frame n of the client's numbered test pattern.
func patternPicture(w, h, n int) *I420 {
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	media.DrawTestPattern(img, n)
	return &I420{Width: w, Height: h, Y: img.Y, U: img.Cb, V: img.Cr, YStride: img.YStride, UStride: img.CStride, VStride: img.CStride}
}

// matchPattern checks every recorded frame against the test pattern frame
// captured at its time, resized the same way, and returns the lowest PSNR.
// The first recorded frame's number is found by search (the track may start
// a frame or two into the stream).
func matchPattern(t *testing.T, clips []loadedClip, out Size, w, h int) float64 {
	t.Helper()
	sc, _ := NewScaler(Size{w, h}, out, FitCrop)
	want := make([]byte, sc.FrameBytes())
	ref := func(n int) []byte {
		if err := sc.Convert(want, patternPicture(w, h, n)); err != nil {
			t.Fatal(err)
		}
		return want
	}
	first := clips[0].frames[0]
	n0, best := 0, -1.0
	for n := 0; n < 30; n++ {
		if p := psnr(first, ref(n)); p > best {
			n0, best = n, p
		}
	}
	t0 := clips[0].ts[0]
	lowest := math.Inf(1)
	for _, c := range clips {
		for i, f := range c.frames {
			n := n0 + int(math.Round(float64(c.ts[i]-t0)/(1e6/30)))
			p := psnr(f, ref(n))
			lowest = math.Min(lowest, p)
			if p < 30 {
				t.Errorf("clip %d frame %d (pattern frame %d): PSNR %.1f dB, want >= 30", c.meta.Clip, i, n, p)
			}
		}
	}
	return lowest
}

// TestE2ERecordsConsentingPeers: alice sends 150 frames of the test pattern
// at 30 fps to the recorder with consent; bob publishes too but does not
// consent. At --fps 10 the recorder writes about 50 of alice's frames, in
// order, 100 ms apart, that match the pattern; numpy loads them; nothing of
// bob's is recorded. The chat alice sends lands in the chat log.
func TestE2ERecordsConsentingPeers(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	dir := t.TempDir()
	rec := startRecorder(t, s, "studio", dir, func(c *Config) { c.FPS = 10 })
	_, alice := joinPeer(t, s, "alice", "studio", rec.self.Peer)
	_, bob := joinPeer(t, s, "bob", "studio", rec.self.Peer)

	// bob publishes without consent: the client refuses to send.
	bsrc, err := media.NewTestPattern(media.PatternConfig{Frames: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer bsrc.Close()
	bpub, err := bob.PublishVideo(bsrc)
	if err != nil {
		t.Fatal(err)
	}
	defer bpub.Close()
	if err := bpub.SendTo(rec.self.Peer); !errors.Is(err, client.ErrRecorderConsent) {
		t.Fatalf("bob sent to the recorder without consent: %v", err)
	}

	src, err := media.NewTestPattern(media.PatternConfig{Frames: 150, FPS: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	pub, err := alice.PublishVideo(src)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.SendTo(rec.self.Peer, client.ConsentToRecording()); err != nil {
		t.Fatal(err)
	}
	if n, err := alice.Send("hello recorder"); err != nil || n < 1 {
		t.Fatalf("chat: sent to %d: %v", n, err)
	}
	select {
	case <-pub.Done():
	case <-time.After(e2eTimeout):
		t.Fatal("publication did not end")
	}
	// The builder holds the last frame until a next packet that never comes.
	if got := waitFrames(t, rec, "alice", 149); got < 140 {
		t.Fatalf("recorder received %d of 150 frames", got)
	}
	rec.stop(t)

	clips := loadShards(t, dir, DefaultSize)
	var ts []int64
	for _, c := range clips {
		if c.meta.User != "alice" {
			t.Errorf("a clip of %s's video: consent not respected", c.meta.User)
		}
		ts = append(ts, c.ts...)
	}
	if len(ts) < 48 || len(ts) > 52 {
		t.Errorf("%d frames written, want 50 ± 2", len(ts))
	}
	for i := 1; i < len(ts); i++ {
		if d := ts[i] - ts[i-1]; d < 90_000 || d > 110_000 {
			t.Errorf("frames %d and %d are %d µs apart, want 100 ms ± 10", i-1, i, d)
		}
	}
	low := matchPattern(t, clips, DefaultSize, 320, 240)
	t.Logf("%d frames in %d clips, lowest PSNR %.1f dB", len(ts), len(clips), low)
	checkNumpyMatchesGo(t, dir, clips)
	chat, err := os.ReadFile(filepath.Join(dir, "studio-chat.jsonl"))
	if err != nil || !bytesContains(chat, `"user":"alice"`, `"text":"hello recorder"`) {
		t.Errorf("chat log %q: %v", chat, err)
	}
	for _, tr := range rec.Tracks() {
		if tr.Info.User != "alice" {
			t.Errorf("recorder received a track from %s", tr.Info.User)
		}
	}
}

func bytesContains(b []byte, subs ...string) bool {
	for _, s := range subs {
		if !strings.Contains(string(b), s) {
			return false
		}
	}
	return true
}

// checkNumpyMatchesGo has numpy load every array of every shard in dir and
// compares shape, dtype, the timestamps and a digest of the frames with
// what this test read itself.
func checkNumpyMatchesGo(t *testing.T, dir string, clips []loadedClip) {
	t.Helper()
	got := numpyDump(t, dir)
	if got == nil {
		return
	}
	for _, c := range clips {
		fr, ts := got[c.meta.Key+".frames.npy"], got[c.meta.Key+".ts.npy"]
		if fmt.Sprint(fr.Shape) != fmt.Sprint([]int{len(c.frames), c.meta.Height, c.meta.Width, 3}) || fr.DType != "uint8" || fr.MD5 != md5Frames(c.frames) {
			t.Errorf("%s: numpy sees frames %+v", c.meta.Key, fr)
		}
		if ts.DType != "int64" || fmt.Sprint(ts.Values) != fmt.Sprint(c.ts) {
			t.Errorf("%s: numpy sees ts %+v, want %v", c.meta.Key, ts, c.ts)
		}
	}
}

// TestRecorderNeedsRecorderRole: a token without the recorder role is
// refused with ErrNotRecorder, and nothing is recorded.
func TestRecorderNeedsRecorderRole(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	s.Register(t, "mallory", "correct horse battery")
	tok, _, err := s.Keys().IssueAccess(auth.Claims{User: "mallory", Role: proto.RoleUser}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rec, err := New(Config{Server: s.URL, Token: tok, Rooms: []string{"studio"}, Out: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	if err := rec.Run(ctx, nil); !errors.Is(err, ErrNotRecorder) {
		t.Fatalf("Run with a user token: %v", err)
	}
}
