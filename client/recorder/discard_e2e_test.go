//go:build cgo

package recorder

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	pionmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// drainWatch passes records on and sends the packet count of each "not
// recorded ended" record.
type drainWatch struct {
	slog.Handler
	drained chan int64
}

func (h *drainWatch) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "not recorded ended") {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "packets" {
				h.drained <- a.Value.Int64()
			}
			return true
		})
	}
	return h.Handler.Handle(ctx, r)
}
func (h *drainWatch) WithAttrs(as []slog.Attr) slog.Handler {
	return &drainWatch{Handler: h.Handler.WithAttrs(as), drained: h.drained}
}
func (h *drainWatch) WithGroup(g string) slog.Handler {
	return &drainWatch{Handler: h.Handler.WithGroup(g), drained: h.drained}
}

// opusSamples is an Opus source of n samples of 20 ms.
type opusSamples struct{ n int }

func (s *opusSamples) MimeType() string { return webrtc.MimeTypeOpus }

func (s *opusSamples) NextSample(context.Context) (pionmedia.Sample, error) {
	if s.n == 0 {
		return pionmedia.Sample{}, io.EOF
	}
	s.n--
	return pionmedia.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond}, nil
}

// TestRefusedTrackIsDrained: a track the recorder does not record (audio
// with audio off; a track refused a slot) is read and its packets
// dropped as they come, until it ends. Before, it was left unread: pion
// kept up to 1 MB of its packets, for every such track of every peer,
// for as long as the peer stayed.
func TestRefusedTrackIsDrained(t *testing.T) {
	t.Run("audio off", func(t *testing.T) {
		s := signalingtest.Start(t, signalingtest.Options{})
		w := &drainWatch{Handler: testLogger(t).Handler(), drained: make(chan int64, 16)}
		rec := startRecorder(t, s, "studio", t.TempDir(), func(c *Config) { c.NoAudio, c.Logger = true, slog.New(w) })
		_, alice := joinPeer(t, s, "alice", "studio", rec.self.Peer)
		const samples = 100
		pub, err := alice.PublishAudio(&opusSamples{n: samples})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pub.Close() })
		if err := pub.SendTo(rec.self.Peer, client.ConsentToRecording()); err != nil {
			t.Fatal(err)
		}
		// The source ends after 2 s, which removes the track.
		waitDrained(t, w, samples/2)
	})
	t.Run("no slot", func(t *testing.T) {
		s := signalingtest.Start(t, signalingtest.Options{})
		w := &drainWatch{Handler: &logWatch{Handler: testLogger(t).Handler(), seen: make(chan string, 256)}, drained: make(chan int64, 16)}
		rec := startRecorder(t, s, "studio", t.TempDir(), func(c *Config) {
			c.MaxTracks, c.NoAudio, c.Logger = 2, true, slog.New(w) // a peer's share: one slot, one waiting
		})
		_, alice := joinPeer(t, s, "alice", "studio", rec.self.Peer)
		lw := w.Handler.(*logWatch)
		publishTo(t, alice, testPattern(t, 0), rec.self.Peer)
		waitLog(t, lw, "track arrived|alice")
		publishTo(t, alice, testPattern(t, 0), rec.self.Peer)
		waitLog(t, lw, "too many tracks|alice")
		const frames = 60
		publishTo(t, alice, testPattern(t, frames), rec.self.Peer)
		waitLog(t, lw, "track refused|alice")
		waitDrained(t, w, frames/2) // at least a packet a frame
	})
}

// waitDrained waits for a track not recorded to end, read to its end,
// with at least min packets.
func waitDrained(t *testing.T, w *drainWatch, min int64) {
	t.Helper()
	select {
	case n := <-w.drained:
		if n < min {
			t.Errorf("the recorder read %d packets of the refused track, want at least %d", n, min)
		}
	case <-time.After(e2eTimeout):
		t.Fatal("the refused track was not read to its end")
	}
}
