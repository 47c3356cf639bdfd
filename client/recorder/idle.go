package recorder

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
)

// A track that sends nothing keeps its recording slot for as long as its
// peer stays, and a peer (hostile, or one whose source simply ended
// without removing its track) could keep slots from every peer waiting
// for one. A recorded track that sends nothing for Config.IdleTimeout ends
// for the recorder: its clip is finished, its slot freed, and its report
// says StopIdle. When its packets come back (a source that paused) it is
// admitted again, as a new track would be, waiting for a slot if none is
// free, and recorded from its next key frame (Recorder.handle).

// StopIdle: the track sent nothing for Config.IdleTimeout.
const StopIdle = "idle"

var errIdle = errors.New("recorder: the track sent nothing for the idle timeout")

// deadlineReader is a track that a deadline wakes (webrtc.TrackRemote).
type deadlineReader interface {
	RTPReader
	SetReadDeadline(time.Time) error
}

// idleReader reads src with a deadline of timeout from each read, and
// reports errIdle when it passes. It owns src's deadline: SetReadDeadline
// (which ends a read when the recorder stops, or consent is withdrawn) is
// kept until cleared, and a read never moves it later.
type idleReader struct {
	src     deadlineReader
	timeout time.Duration

	mu    sync.Mutex
	woken time.Time // a deadline set from outside, or zero
}

func newIdleReader(src deadlineReader, timeout time.Duration) RTPReader {
	if timeout <= 0 {
		return src
	}
	return &idleReader{src: src, timeout: timeout}
}

func (r *idleReader) ReadRTP() (*rtp.Packet, interceptor.Attributes, error) {
	r.mu.Lock()
	deadline, outside := time.Now().Add(r.timeout), !r.woken.IsZero()
	if outside && r.woken.Before(deadline) {
		deadline = r.woken
	}
	_ = r.src.SetReadDeadline(deadline)
	r.mu.Unlock()
	pkt, attr, err := r.src.ReadRTP()
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		r.mu.Lock()
		woken := !r.woken.IsZero() && !time.Now().Before(r.woken)
		r.mu.Unlock()
		if !woken {
			return nil, nil, errIdle
		}
	}
	return pkt, attr, err
}

// SetReadDeadline sets a deadline from outside, which takes precedence
// over the idle one when it is sooner; zero clears it.
func (r *idleReader) SetReadDeadline(t time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.woken = t
	return r.src.SetReadDeadline(t)
}
