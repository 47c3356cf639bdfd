package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/client/media"
	"github.com/khadga/khadga/client/media/vpx"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// goPeer signs a Go client in as user, with pion limited to 127.0.0.1.
func goPeer(t *testing.T, s *signalingtest.Server, user string) *client.Client {
	t.Helper()
	s.Register(t, user, password)
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := client.Dial(ctx, s.URL, client.Credentials{Username: user, Password: password},
		client.WithSettingEngine(se), client.WithLogger(signalingtest.Logger(t)))
	if err != nil {
		t.Fatalf("Go client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// goPeerJoins signs a Go client in as user, joins room, where page is, and
// waits until the two are connected both ways.
func goPeerJoins(t *testing.T, s *signalingtest.Server, user, room string, page *page) (*client.Client, *client.Room, *client.PeerConnected) {
	t.Helper()
	g := goPeer(t, s, user)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	r, err := g.Join(ctx, room)
	if err != nil {
		t.Fatalf("Go join: %v", err)
	}
	conn := next[*client.PeerConnected](t, r, "a connection to "+page.name, nil)
	page.waitConnected(user)
	return g, r, conn
}

// next waits for the room's first event of type T that matches ok.
func next[T client.Event](t *testing.T, r *client.Room, what string, ok func(T) bool) T {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		select {
		case ev, open := <-r.Events():
			if !open {
				t.Fatalf("room events closed while waiting for %s", what)
			}
			if e, is := ev.(T); is && (ok == nil || ok(e)) {
				return e
			}
		case <-timer.C:
			t.Fatalf("no %s within %v", what, waitTimeout)
		}
	}
}

// TestBrowserAndGoClient: a browser and a Go peer share a room. They chat
// both ways over the same "chat" data channel convention, and the Go peer
// receives the browser's camera as VP8: RTP packets arrive, reassemble into
// frames, and a key frame decodes to the camera's size. The Go peer's test
// pattern then plays in the page. (Which side is polite depends on the
// random peer ids; the test logs it.)
func TestBrowserAndGoClient(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.join("mixed")

	g, room, conn := goPeerJoins(t, s, "gopher", "mixed", alice)
	t.Logf("browser is the %s side", map[bool]string{true: "polite", false: "impolite"}[conn.Member.Peer < g.Self().Peer])

	if n, err := room.Send("hello from Go"); err != nil || n != 1 {
		t.Fatalf("Go send: %d peers, %v", n, err)
	}
	alice.waitMessage("gopher", "hello from Go")
	alice.say("hello from the browser")
	msg := next[*client.Message](t, room, "the browser's message", func(m *client.Message) bool { return m.Text == "hello from the browser" })
	if msg.From.User != "alice" || msg.Room != "mixed" {
		t.Errorf("message from %+v in %q, want alice in mixed", msg.From, msg.Room)
	}

	alice.press("camera")
	var track *client.IncomingTrack
	for track == nil {
		tr := next[*client.IncomingTrack](t, room, "the browser's track", nil)
		if tr.Track.Kind() == webrtc.RTPCodecTypeVideo {
			track = tr
		}
	}
	if got := track.Track.Codec().MimeType; got != webrtc.MimeTypeVP8 {
		t.Fatalf("video codec %s, want %s", got, webrtc.MimeTypeVP8)
	}
	if err := track.RequestKeyframe(); err != nil {
		t.Logf("key frame request: %v", err)
	}
	var ivf bytes.Buffer
	readCtx, cancelRead := context.WithTimeout(context.Background(), waitTimeout)
	defer cancelRead()
	frames, err := client.WriteIVF(readCtx, track.Track, &ivf, 30)
	if err != nil || frames < 30 {
		t.Fatalf("read %d VP8 frames from the browser: %v", frames, err)
	}
	w, h := firstKeyframe(t, ivf.Bytes())
	t.Logf("Go peer received %d VP8 frames; key frame %dx%d", frames, w, h)
	if w == 0 || h == 0 {
		t.Fatal("no VP8 key frame among the frames")
	}

	// And the other way: the Go peer's test pattern plays in the page.
	pattern, err := media.NewTestPattern(media.PatternConfig{})
	if errors.Is(err, vpx.ErrNoLibvpx) {
		t.Log("built without cgo: no libvpx to encode the Go peer's video; skipping Go to browser video")
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	pub, err := room.PublishVideo(pattern)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.SendTo(conn.Member.Peer); err != nil {
		t.Fatalf("send video to the browser: %v", err)
	}
	got := waitVideoPlaying(alice, "gopher")
	t.Logf("browser plays the Go peer's video: %dpx wide, %d frames", got.Width, got.FramesDecoded)
}

// firstKeyframe finds the first VP8 key frame in an IVF stream and returns
// its size, decoded with libvpx when the build has it (cgo), else read from
// the key frame header (RFC 6386 section 9.1).
func firstKeyframe(t *testing.T, ivf []byte) (w, h int) {
	r, _, err := ivfreader.NewWith(bytes.NewReader(ivf))
	if err != nil {
		t.Fatalf("IVF: %v", err)
	}
	dec, err := media.NewDecoder(webrtc.MimeTypeVP8)
	if err != nil && !errors.Is(err, vpx.ErrNoLibvpx) {
		t.Fatalf("decoder: %v", err)
	}
	if dec != nil {
		defer dec.Close()
	}
	for {
		frame, _, err := r.ParseNextFrame()
		if err != nil {
			return 0, 0
		}
		key := len(frame) >= 10 && frame[0]&1 == 0 && bytes.Equal(frame[3:6], []byte{0x9d, 0x01, 0x2a})
		if !key {
			continue
		}
		if dec == nil {
			return int(frame[6]) | int(frame[7]&0x3f)<<8, int(frame[8]) | int(frame[9]&0x3f)<<8
		}
		img, err := dec.Decode(frame)
		if err != nil {
			t.Fatalf("decode key frame: %v", err)
		}
		return img.Rect.Dx(), img.Rect.Dy()
	}
}
