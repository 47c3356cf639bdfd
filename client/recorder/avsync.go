package recorder

import (
	"sync"

	"github.com/pion/rtcp"
)

// Keeping a peer's audio in step with its video.
//
// Each stream's RTP timestamps count in its own clock (90 kHz video, 48
// kHz Opus) from a random start, so they say nothing about each other.
// The sender's RTCP sender reports do: each maps one RTP timestamp of its
// stream to the sender's wall clock (NTP), the same clock for both. The
// video frames' times (ts.npy) are the first frame's arrival plus RTP
// time, so a video sender report gives the offset D from the sender's
// clock to those times, and an audio sender report then places any audio
// sample on them: the audio of a clip is exactly the span of its frames,
// however the two streams were delayed on the way. Until both streams
// have reported (a second or so), the audio is placed by its own first
// packet's arrival, as the frames are ("arrival"), which leaves it off by
// the difference of the two streams' delays.

// senderReport is the last RTCP sender report of one stream.
type senderReport struct {
	ntpUS int64  // the sender's wall clock, Unix µs
	rtp   uint32 // the RTP time it maps to
	ok    bool
}

// ntpUnixUS turns an NTP timestamp (seconds since 1900, 32.32 fixed
// point) into Unix microseconds.
func ntpUnixUS(ntp uint64) int64 {
	const unixFromNTP = 2208988800
	sec := int64(ntp>>32) - unixFromNTP
	frac := int64((ntp & 0xffffffff) * 1_000_000 >> 32)
	return sec*1_000_000 + frac
}

// avSync holds what places one peer's audio against its video.
type avSync struct {
	mu    sync.Mutex
	video senderReport
	audio senderReport
	frame struct { // the latest video frame
		rtp uint32
		us  int64
		ok  bool
	}
}

// report records a sender report of the video (video true) or audio stream.
func (s *avSync) report(video bool, sr *rtcp.SenderReport) {
	r := senderReport{ntpUS: ntpUnixUS(sr.NTPTime), rtp: sr.RTPTime, ok: true}
	s.mu.Lock()
	defer s.mu.Unlock()
	if video {
		s.video = r
	} else {
		s.audio = r
	}
}

// videoFrame records a video frame's RTP time and the time ts.npy gives it.
func (s *avSync) videoFrame(rtp uint32, us int64) {
	s.mu.Lock()
	s.frame.rtp, s.frame.us, s.frame.ok = rtp, us, true
	s.mu.Unlock()
}

// audioRTP returns the audio RTP time at a time of the video's ts.npy,
// if both streams have sent reports.
func (s *avSync) audioRTP(us int64) (uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.video.ok || !s.audio.ok || !s.frame.ok {
		return 0, false
	}
	// The sender's clock at the latest frame, by the video report.
	frameNTP := s.video.ntpUS + int64(int32(s.frame.rtp-s.video.rtp))*1_000_000/90000
	d := s.frame.us - frameNTP // from the sender's clock to ts.npy's
	ntp := us - d
	return s.audio.rtp + uint32(int32((ntp-s.audio.ntpUS)*audioRTPRate/1_000_000)), true
}

// readReports reads a receiver's RTCP with read (the interceptors need it
// read anyway) and records the sender reports, until it fails (the track
// ended).
func readReports(read func() ([]rtcp.Packet, error), s *avSync, video bool) {
	for {
		pkts, err := read()
		if err != nil {
			return
		}
		for _, p := range pkts {
			if sr, ok := p.(*rtcp.SenderReport); ok {
				s.report(video, sr)
			}
		}
	}
}
