//go:build cgo

package client

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/khadga/khadga/client/media"
	"github.com/khadga/khadga/proto"
)

// TestE2EVideoTestPattern sends 90 frames of the test pattern; the
// receiver's IVF decodes with libvpx to frames whose counters are in order.
func TestE2EVideoTestPattern(t *testing.T) {
	ts := startServer(t, false)
	_, bob, ra, rb := ts.aliceAndBob(t, "video")

	src, err := media.NewTestPattern(media.PatternConfig{Frames: 90, FPS: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	pub, err := ra.PublishVideo(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.SendTo(bob.Self().Peer); err != nil {
		t.Fatal(err)
	}
	tr := waitEvent[*IncomingTrack](t, rb.events, nil)
	if tr.From.User != "alice" || tr.Track.Codec().MimeType != webrtcVP8 {
		t.Fatalf("track from %+v codec %s", tr.From, tr.Track.Codec().MimeType)
	}
	path := filepath.Join(t.TempDir(), "alice.ivf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	// Stop when all 90 frames arrived, or shortly after the sender is done
	// (frames lost at the end would otherwise be waited for forever).
	wctx, wcancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-pub.Done():
			// Let the last packets arrive: the receiver stops at 90 frames
			// or when the publication's track is removed.
			_ = pub.Close()
		case <-wctx.Done():
		}
	}()
	n, err := WriteIVF(wctx, tr.Track, f, 90)
	wcancel()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if pub.Err() != nil {
		t.Fatalf("publication: %v", pub.Err())
	}
	counters := decodeIVF(t, path)
	t.Logf("received %d frames (WriteIVF counted %d), sent %d", len(counters), n, pub.Frames())
	if len(counters) < 80 {
		t.Fatalf("decoded %d frames of 90", len(counters))
	}
	for i := 1; i < len(counters); i++ {
		if counters[i] <= counters[i-1] {
			t.Fatalf("frame %d has counter %d after %d: out of order", i, counters[i], counters[i-1])
		}
	}
	if lost := 90 - len(counters); lost > 0 {
		t.Logf("lost %d frames", lost)
	}
}

const webrtcVP8 = "video/VP8"

func decodeIVF(t *testing.T, path string) []int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	d, err := media.NewDecoder(media.MimeTypeVP8)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var counters []int
	for {
		frame, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return counters
		}
		if err != nil {
			t.Fatal(err)
		}
		img, err := d.Decode(frame)
		if err != nil {
			t.Fatalf("decode frame %d: %v", len(counters), err)
		}
		if img == nil {
			continue
		}
		n, ok := media.ReadCounter(img)
		if !ok {
			t.Fatalf("frame %d: counter unreadable", len(counters))
		}
		counters = append(counters, n)
	}
}

// TestE2ERecorderConsent: media goes to a recorder only with consent.
func TestE2ERecorderConsent(t *testing.T) {
	ts := startServer(t, false)
	alice, rec := ts.newClient(t, "alice"), ts.newClient(t, "rec")
	ra, rr := join(t, alice, "consent"), join(t, rec, "consent")
	connected(t, ra, "rec")
	connected(t, rr, "alice")
	// The test server cannot mint recorder tokens, so alice is told the
	// role as the server would announce it.
	p, err := ra.peer(rec.Self().Peer)
	if err != nil {
		t.Fatal(err)
	}
	p.setMember(proto.Member{Peer: rec.Self().Peer, User: "rec", Role: proto.RoleRecorder})
	src, err := media.NewTestPattern(media.PatternConfig{Frames: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	pub, err := ra.PublishVideo(src)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.SendTo(rec.Self().Peer); !errors.Is(err, ErrRecorderConsent) {
		t.Fatalf("SendTo a recorder without consent: %v", err)
	}
	if len(pub.Targets()) != 0 || pub.Frames() != 0 {
		t.Fatal("something was sent without consent")
	}
	if err := pub.SendTo(rec.Self().Peer, ConsentToRecording()); err != nil {
		t.Fatal(err)
	}
	if tr := waitEvent[*IncomingTrack](t, rr.events, nil); tr.From.User != "alice" {
		t.Fatalf("track from %+v", tr.From)
	}
}
