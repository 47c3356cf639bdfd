package recorder

import (
	"math"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// TestAudioTimeline: samples land at their RTP positions across a 32-bit
// wrap, a gap reads as missing zeros, and what falls out of the ring is
// missing too.
func TestAudioTimeline(t *testing.T) {
	a := newAudioTimeline(time.Second) // 16000 samples
	now := time.Unix(1000, 0)
	raw := uint32(math.MaxUint32 - 959) // the second packet wraps
	ones := func(n int, v float32) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = v
		}
		return s
	}
	tick := a.packet(raw, now)
	a.write(tick/ticksPerSample, ones(320, 1))
	tick2 := a.packet(raw+960, now) // wrapped to 0
	if tick2 != tick+960 {
		t.Fatalf("unwrapped %d, want %d", tick2, tick+960)
	}
	a.write(tick2/ticksPerSample, ones(320, 2))
	tick3 := a.packet(raw+3*960, now) // one packet lost
	a.write(tick3/ticksPerSample, ones(320, 3))
	got, missing := a.read(tick/ticksPerSample, 4*320)
	if missing != 320 || got[0] != 1 || got[320] != 2 || got[640] != 0 || got[960] != 3 {
		t.Fatalf("read: %d missing, samples %v %v %v %v", missing, got[0], got[320], got[640], got[960])
	}
	// A second and a half later the first packets are out of the ring.
	tick4 := a.packet(raw+uint32(24000*3), now)
	a.write(tick4/ticksPerSample, ones(320, 4))
	if _, missing := a.read(tick/ticksPerSample, 320); missing != 320 {
		t.Fatalf("evicted samples read as present (%d missing)", missing)
	}
	if got, missing := a.read(tick4/ticksPerSample, 320); missing != 0 || got[0] != 4 {
		t.Fatalf("newest samples: %d missing, %v", missing, got[0])
	}
}

// TestAudioSpanBySenderReports: with both streams' sender reports, a span
// of ts.npy's clock maps to the audio the sender captured at the same
// time, whatever each stream's arrival; before them, by arrival.
func TestAudioSpanBySenderReports(t *testing.T) {
	a := newAudioTimeline(10 * time.Second)
	s := newAVSync()
	arrival := time.UnixMicro(5_000_000)
	// Audio RTP 48000 is sender time 10 s; its packet arrives at 5 s on
	// the recorder's clock.
	tick := a.packet(48000, arrival)
	samples := make([]float32, 16000)
	for i := range samples {
		samples[i] = float32(i)
	}
	a.write(tick/ticksPerSample, samples)

	got, meta, ok := a.span(s, 5_000_000+500_000, 5_000_000+500_000+1000)
	if !ok || meta.Sync != "arrival" || meta.Samples != 16 || got[0] != 8000 {
		t.Fatalf("arrival: %+v first %v", meta, got[0])
	}
	// Sender reports: audio RTP 48000 = sender 10 s; video RTP 9000 =
	// sender 10.1 s; the frame with video RTP 9000 is at 7 s in ts.npy.
	ntp := func(us int64) uint64 { return uint64(us/1_000_000+2208988800)<<32 | uint64(us%1_000_000)<<32/1_000_000 }
	s.report(false, &rtcp.SenderReport{NTPTime: ntp(10_000_000), RTPTime: 48000})
	s.report(true, &rtcp.SenderReport{NTPTime: ntp(10_100_000), RTPTime: 9000})
	s.videoFrame(9000, 7_000_000)
	// ts.npy 7 s is sender 10.1 s: audio sample 1600 (0.1 s in).
	got, meta, ok = a.span(s, 7_000_000, 7_000_000+1000)
	if !ok || meta.Sync != "rtcp" || meta.Missing != 0 || math.Abs(float64(got[0])-1600) > 1 {
		t.Fatalf("rtcp: %+v first %v, want sample 1600", meta, got[0])
	}
	if _, _, ok := newAudioTimeline(time.Second).span(s, 0, 1000); ok {
		t.Fatal("a peer that sent no audio has an audio span")
	}
}

// TestSenderReportsLateWriter: a sender whose writes fall behind (pion
// reports the time of the last write) reports its RTP times late, never
// early; the punctual report of the recent ones places the stream, until
// one says the timing changed for good or a new track's reports come.
func TestSenderReportsLateWriter(t *testing.T) {
	h := streamReports{rate: 90000}
	// RTP 90000·k is truly sender time k s; reports at k = 1..6, late by:
	late := []int64{3_000, 1_000, 40_000, 2_000, 77_000, 5_000}
	for i, l := range late {
		k := int64(i + 1)
		h.add(senderReport{ntpUS: k*1_000_000 + l, rtp: uint32(90000 * k)})
	}
	best, _ := h.best()
	if got := h.at(best, 90000*10); got != 10_001_000 {
		t.Fatalf("RTP of 10 s placed at %d µs, want 10001000 (the 1 ms late report)", got)
	}
	// A pause: the sender went on 2 s later with the next RTP time.
	h.add(senderReport{ntpUS: 9_000_000, rtp: 90000 * 7})
	if best, _ := h.best(); len(h.all) != 1 || h.at(best, 90000*7) != 9_000_000 {
		t.Fatalf("after a 2 s jump: %d reports kept, RTP of 7 s at %d µs, want the new report alone", len(h.all), h.at(best, 90000*7))
	}
	// A new track (its SSRC) with RTP times of its own: its reports alone.
	h.add(senderReport{ssrc: 2, ntpUS: 9_500_000, rtp: 12345})
	if best, _ := h.best(); len(h.all) != 1 || best.ssrc != 2 {
		t.Fatalf("after a new SSRC: %d reports kept, best of SSRC %d", len(h.all), best.ssrc)
	}
	// Reports older than the window go.
	for k := int64(8); k < 30; k++ {
		h.add(senderReport{ssrc: 2, ntpUS: (k + 2) * 1_000_000, rtp: uint32(90000 * k)})
	}
	if n := len(h.all); n > reportsKept || h.all[0].ntpUS < 31_000_000-reportsWindow.Microseconds() {
		t.Fatalf("%d reports kept, oldest at %d µs", n, h.all[0].ntpUS)
	}
}

func TestNTPUnix(t *testing.T) {
	if got := ntpUnixUS(uint64(2208988800+3)<<32 | 1<<31); got != 3_500_000 {
		t.Fatalf("NTP 3.5 s after 1970: %d µs", got)
	}
}

// TestAudioSpanBounded: a span that runs backwards has no audio, and one
// longer than the ring is cut to the ring's length at its end, where the
// audio kept is: its allocation is bounded by what is kept per peer, not
// by the frames' times, which the sender chooses.
func TestAudioSpanBounded(t *testing.T) {
	a := newAudioTimeline(time.Second) // 16000 samples
	s := newAVSync()
	arrival := time.UnixMicro(5_000_000)
	tick := a.packet(48000, arrival)
	a.write(tick/ticksPerSample, make([]float32, 320))
	if _, _, ok := a.span(s, 5_000_000, 4_000_000); ok {
		t.Fatal("a span that runs backwards has audio")
	}
	const hour = 3600_000_000
	_, meta, ok := a.span(s, 5_000_000-hour, 5_000_001)
	if !ok || meta.Samples > 16000 || meta.Samples < 15998 || meta.StartUS+int64(meta.Samples)*1_000_000/AudioRate != 5_000_001-1 &&
		meta.StartUS+int64(meta.Samples)*1_000_000/AudioRate != 5_000_001 {
		t.Fatalf("an hour's span: %+v", meta)
	}
	if (meta.StartUS-(5_000_000-hour))%125 != 0 {
		t.Errorf("start moved by %d µs, not whole pairs of samples", meta.StartUS-(5_000_000-hour))
	}
}
