package client

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// endingSource gives n Opus samples, then end (io.EOF for a file played
// to its end, another error for a device that failed).
type endingSource struct {
	n   int
	end error
}

func (s *endingSource) MimeType() string { return webrtc.MimeTypeOpus }

func (s *endingSource) NextSample(context.Context) (media.Sample, error) {
	if s.n == 0 {
		return media.Sample{}, s.end
	}
	s.n--
	return media.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond}, nil
}

// TestE2ESourceEndRemovesTrack: when a publication's source ends, or
// fails, its track leaves the peer connection as Close would remove it,
// and the receiver's track ends (ReadRTP returns io.EOF). Before, the
// track stayed: the remote saw it frozen on its last frame until the
// application called Close.
func TestE2ESourceEndRemovesTrack(t *testing.T) {
	failed := errors.New("camera unplugged")
	for _, tc := range []struct {
		name string
		end  error
	}{{"eof", io.EOF}, {"error", failed}} {
		t.Run(tc.name, func(t *testing.T) {
			pub, tr, bob := audioToBob(t, "ends", &endingSource{n: 50, end: tc.end})
			if err := tr.Track.SetReadDeadline(time.Now().Add(testTimeout)); err != nil {
				t.Fatal(err)
			}
			packets := 0
			for {
				_, _, err := tr.Track.ReadRTP()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("after %d packets the receiver's track did not end: %v (publication done: %v)", packets, err, isClosed(pub.Done()))
				}
				packets++
			}
			<-pub.Done()
			if tc.end == io.EOF && pub.Err() != nil || tc.end != io.EOF && !errors.Is(pub.Err(), failed) {
				t.Errorf("publication ended with %v, want %v", pub.Err(), tc.end)
			}
			if len(pub.Targets()) != 0 {
				t.Errorf("the ended publication still goes to %v", pub.Targets())
			}
			if err := pub.SendTo(bob); !errors.Is(err, ErrClosed) {
				t.Errorf("SendTo after the source ended: %v, want ErrClosed", err)
			}
		})
	}
}

// audioToBob has alice publish src in room and send it to bob, and
// returns the publication (closed when the test ends), bob's track and
// his peer id.
func audioToBob(t *testing.T, room string, src AudioSource) (*Publication, *IncomingTrack, string) {
	t.Helper()
	ts := startServer(t, false)
	_, bob, ra, rb := ts.aliceAndBob(t, room)
	pub, err := ra.PublishAudio(src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	if err := pub.SendTo(bob.Self().Peer); err != nil {
		t.Fatal(err)
	}
	return pub, waitEvent[*IncomingTrack](t, rb.events, nil), bob.Self().Peer
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// stallingSource gives n Opus samples, then blocks in NextSample until
// its context is done (stalled closed first, cancelled then), and returns
// only once release is closed: a source that takes its time to stop.
type stallingSource struct {
	n                           int
	stalled, cancelled, release chan struct{}
}

func (s *stallingSource) MimeType() string { return webrtc.MimeTypeOpus }

func (s *stallingSource) NextSample(ctx context.Context) (media.Sample, error) {
	if s.n > 0 {
		s.n--
		return media.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond}, nil
	}
	close(s.stalled)
	<-ctx.Done()
	close(s.cancelled)
	<-s.release
	return media.Sample{}, ctx.Err()
}

// TestCloseWaitsForPublications: Client.Close, which says it waits for
// the client's goroutines, waits for its publications' too (as Leave
// does), so that no source is still being read after Close returns.
// Before, Close cancelled them and returned.
func TestCloseWaitsForPublications(t *testing.T) {
	src := &stallingSource{n: 25, stalled: make(chan struct{}), cancelled: make(chan struct{}), release: make(chan struct{})}
	pub, _, _ := audioToBob(t, "closing", src)
	release := sync.OnceFunc(func() { close(src.release) })
	t.Cleanup(release) // before audioToBob's pub.Close, which would wait for ever
	<-src.stalled
	closed := make(chan struct{})
	go func() { pub.room.c.Close(); close(closed) }()
	select {
	case <-src.cancelled:
	case <-time.After(testTimeout):
		t.Fatal("Close did not cancel the publication's source")
	}
	// Give a wrong Close a second to return while the source still runs.
	select {
	case <-closed:
		t.Fatal("Close returned while a publication's source was still running")
	case <-time.After(time.Second):
	}
	release()
	select {
	case <-closed:
	case <-time.After(testTimeout):
		t.Fatal("Close did not return once the source stopped")
	}
	if !isClosed(pub.Done()) {
		t.Error("the publication's pump was still running after Close")
	}
}
