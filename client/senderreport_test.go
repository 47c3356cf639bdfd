package client

import (
	"testing"
	"time"

	"github.com/pion/rtp"
)

// TestSenderReportByCaptureTime: a stream written 300 ms behind its
// schedule reports its RTP times at the schedule's times, not the writes';
// a stream with no clock is reported by write time, as pion does; a
// resent packet moves nothing.
func TestSenderReportByCaptureTime(t *testing.T) {
	f := &senderReports{}
	var clock captureClock
	f.clocks.Store(uint32(1), &clock)
	start := time.Now().Add(-time.Second)
	// Frame k (90 kHz, 30 fps) is meant for start + k/30 s; the writer is
	// 300 ms late with the last.
	s := &reportStream{ssrc: 1, rate: 90000}
	for k := range 10 {
		clock.set(start.Add(time.Duration(k) * time.Second / 30))
		s.packet(&rtp.Header{SequenceNumber: uint16(k), Timestamp: uint32(3000 * k)}, 100, f.captured(1))
	}
	s.packet(&rtp.Header{SequenceNumber: 5, Timestamp: 3000 * 5}, 100, f.captured(1)) // a resend
	now := start.Add(time.Second)
	sr := s.report(now)
	// At start + 1 s the schedule is at RTP 90000.
	if sr.RTPTime != 90000 || ntpTime(now) != sr.NTPTime || sr.PacketCount != 11 || sr.OctetCount != 1100 {
		t.Fatalf("report at start+1s: RTP %d (want 90000), %d packets, %d bytes", sr.RTPTime, sr.PacketCount, sr.OctetCount)
	}

	// No clock: the time of the write.
	u := &reportStream{ssrc: 2, rate: 48000}
	if u.report(now) != nil {
		t.Fatal("a stream that sent nothing has a report")
	}
	before := time.Now()
	u.packet(&rtp.Header{Timestamp: 960}, 50, f.captured(2))
	if sr := u.report(before.Add(time.Second)); sr.RTPTime < 960+47900 || sr.RTPTime > 960+48000 {
		t.Fatalf("unclocked stream: RTP %d a second after its write, want about %d", sr.RTPTime, 960+48000)
	}
}

func TestNTPTime(t *testing.T) {
	if got := ntpTime(time.Unix(3, 500_000_000)); got != uint64(2208988800+3)<<32|1<<31 {
		t.Fatalf("3.5 s after 1970: NTP %#x", got)
	}
}
