package client

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
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

// stampedSource is an audio source whose sample k (payload: k) is stamped
// as captured at first + k × 20 ms: with first before the source's first
// call, it is a source that took that long to return its first sample (a
// first encode, a preempted goroutine), without waiting for it.
type stampedSource struct {
	first time.Time
	k     uint32
}

func (s *stampedSource) MimeType() string { return webrtc.MimeTypeOpus }

func (s *stampedSource) stamp(k uint32) time.Time {
	return s.first.Add(time.Duration(k) * 20 * time.Millisecond)
}

func (s *stampedSource) NextSample(context.Context) (media.Sample, error) {
	data := binary.BigEndian.AppendUint32(nil, s.k)
	at := s.stamp(s.k)
	s.k++
	return media.Sample{Data: data, Timestamp: at, Duration: 20 * time.Millisecond}, nil
}

// TestE2ESenderReportsBySampleTimestamp: a source that stamps its samples
// with their capture times is reported by them, not by when the
// publication got them: every sample of this one was captured at least
// 300 ms before the publication's schedule has it, and bob's sender report puts
// a received packet's RTP time at its sample's stamp. (Reported by the
// schedule, a stream whose first sample came late stays that late: a
// tone once 16 ms, and its beeps 23 ms off their frames.)
func TestE2ESenderReportsBySampleTimestamp(t *testing.T) {
	src := &stampedSource{first: time.Now().Add(-300 * time.Millisecond)}
	_, tr, _ := audioToBob(t, "stamps", src)
	pkt, _, err := tr.Track.ReadRTP()
	if err != nil {
		t.Fatal(err)
	}
	if len(pkt.Payload) != 4 {
		t.Fatalf("payload %x, want a sample number", pkt.Payload)
	}
	want := src.stamp(binary.BigEndian.Uint32(pkt.Payload))
	// pion's interceptors see the RTP only as it is read.
	go func() {
		for {
			if _, _, err := tr.Track.ReadRTP(); err != nil {
				return
			}
		}
	}()
	tr.Receiver.SetReadDeadline(time.Now().Add(testTimeout))
	for {
		pkts, _, err := tr.Receiver.ReadRTCP()
		if err != nil {
			t.Fatalf("no sender report: %v", err)
		}
		for _, p := range pkts {
			sr, ok := p.(*rtcp.SenderReport)
			if !ok || sr.SSRC != pkt.SSRC {
				continue
			}
			at := ntpUnix(sr.NTPTime).Add(time.Duration(int32(pkt.Timestamp-sr.RTPTime)) * time.Second / 48000)
			if d := at.Sub(want); d < -time.Millisecond || d > time.Millisecond {
				t.Fatalf("the sender report puts the packet's RTP time %v from its sample's stamp, want within 1 ms", d)
			}
			return
		}
	}
}

// ntpUnix is the inverse of ntpTime, to the nanosecond.
func ntpUnix(ntp uint64) time.Time {
	const ntpFromUnix = 2208988800
	return time.Unix(int64(ntp>>32)-ntpFromUnix, int64((ntp&0xffffffff)*1e9>>32))
}

func TestNTPTime(t *testing.T) {
	if got := ntpTime(time.Unix(3, 500_000_000)); got != uint64(2208988800+3)<<32|1<<31 {
		t.Fatalf("3.5 s after 1970: NTP %#x", got)
	}
}
