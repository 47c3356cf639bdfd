package recorder

import (
	"sync"
	"time"

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
//
// A sender report is only as good as the sender's idea of when its last
// packet was captured. Browsers take it from the capture clock, and the Go
// client (khadga-peer) from its sources' stamps (client/senderreport.go);
// pion's report interceptor takes the time the last frame was written, so
// a sender that falls behind (a slow encode on a loaded machine) reports
// its RTP times late by as much, never early: a report 77 ms late put a
// whole clip's audio 77 ms off. So each stream
// keeps its recent reports (reportsKept, at most reportsWindow old) and
// uses the one that places the stream earliest, the most punctual. A
// report later than that by more than reportsJump means the stream's
// timing changed (a sender that paused and went on with the next RTP
// time), and one of another SSRC is of a new track: the reports start
// over from it.

// senderReport is one RTCP sender report of a stream.
type senderReport struct {
	ssrc  uint32 // the stream's
	ntpUS int64  // the sender's wall clock, Unix µs
	rtp   uint32 // the RTP time it maps to
}

// What a stream keeps of its sender reports (pion sends one a second).
const (
	reportsKept   = 8
	reportsWindow = 10 * time.Second
	reportsJump   = 500 * time.Millisecond
)

// streamReports are a stream's recent sender reports, oldest first.
type streamReports struct {
	rate int64 // the RTP clock
	all  []senderReport
}

// at is the sender time of RTP time rtp by report r, Unix µs.
func (h *streamReports) at(r senderReport, rtp uint32) int64 {
	return r.ntpUS + int64(int32(rtp-r.rtp))*1_000_000/h.rate
}

// add records a report, forgetting the old ones, or all of them when it
// is of another stream (a new track of the peer's, with RTP times of its
// own) or says the stream's timing changed.
func (h *streamReports) add(r senderReport) {
	if best, ok := h.best(); ok && (best.ssrc != r.ssrc || r.ntpUS-h.at(best, r.rtp) > reportsJump.Microseconds()) {
		h.all = h.all[:0]
	}
	h.all = append(h.all, r)
	drop := max(0, len(h.all)-reportsKept)
	for drop < len(h.all)-1 && r.ntpUS-h.all[drop].ntpUS > reportsWindow.Microseconds() {
		drop++
	}
	h.all = append(h.all[:0], h.all[drop:]...)
}

// best is the kept report that places the newest one's RTP time
// earliest.
func (h *streamReports) best() (senderReport, bool) {
	if len(h.all) == 0 {
		return senderReport{}, false
	}
	newest := h.all[len(h.all)-1]
	best := newest
	for _, r := range h.all {
		if h.at(r, newest.rtp) < h.at(best, newest.rtp) {
			best = r
		}
	}
	return best, true
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
	video streamReports
	audio streamReports
	frame struct { // the latest video frame
		rtp uint32
		us  int64
		ok  bool
	}
}

func newAVSync() *avSync {
	return &avSync{video: streamReports{rate: 90000}, audio: streamReports{rate: audioRTPRate}}
}

// report records a sender report of the video (video true) or audio stream.
func (s *avSync) report(video bool, sr *rtcp.SenderReport) {
	r := senderReport{ssrc: sr.SSRC, ntpUS: ntpUnixUS(sr.NTPTime), rtp: sr.RTPTime}
	s.mu.Lock()
	defer s.mu.Unlock()
	if video {
		s.video.add(r)
	} else {
		s.audio.add(r)
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
	video, vok := s.video.best()
	audio, aok := s.audio.best()
	if !vok || !aok || !s.frame.ok {
		return 0, false
	}
	// The sender's clock at the latest frame, by the video report.
	d := s.frame.us - s.video.at(video, s.frame.rtp) // from the sender's clock to ts.npy's
	ntp := us - d
	return audio.rtp + uint32(int32((ntp-audio.ntpUS)*audioRTPRate/1_000_000)), true
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
