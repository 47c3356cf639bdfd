package client

import (
	"context"
	"errors"
	"io"
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
