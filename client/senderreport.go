package client

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Sender reports by capture time.
//
// A receiver keeps a peer's audio and video in step by the RTCP sender
// reports, which map each stream's RTP time to the sender's wall clock
// (RFC 3550, 6.4.1). pion's report interceptor maps the RTP time of the
// latest frame to the time it was written, which is when it was captured
// only if the writer keeps up: a publication that falls behind (a slow
// encode, a starved CPU) reports its RTP times late by its backlog, and a
// recorder then puts the audio that far off the frames (77 to 242 ms seen
// under -race on two busy cores). A browser takes the time from its
// capture clock; so does this: before each sample a publication sets its
// captureClock to the sample's capture time (its Timestamp, which the
// source sets) or else to its place on the publication's schedule, and
// the reports of its senders' streams map the latest frame's RTP time to
// that. The schedule starts when the source returns its first sample, so
// a stream is reported late by however long that took, to its end: a tone
// whose first sample took 16 ms on a loaded machine, before sources
// stamped their samples, had its beeps recorded 23 ms off their frames.
// Streams with no clock (retransmissions) are reported by write time, as
// pion does.

// senderReportInterval is how often each stream is reported (pion's too).
const senderReportInterval = time.Second

// captureClock holds when the sample being written was captured.
type captureClock struct{ ns atomic.Int64 }

func (c *captureClock) set(t time.Time) { c.ns.Store(t.UnixNano()) }

// senderReports is the interceptor factory; it knows, client-wide, which
// outgoing streams (by SSRC) have a captureClock.
type senderReports struct {
	clocks sync.Map // uint32 SSRC → *captureClock
}

// track gives sender's streams the clock c.
func (f *senderReports) track(sender *webrtc.RTPSender, c *captureClock) {
	for _, e := range sender.GetParameters().Encodings {
		f.clocks.Store(uint32(e.SSRC), c)
	}
}

// untrack forgets sender's streams.
func (f *senderReports) untrack(sender *webrtc.RTPSender) {
	for _, e := range sender.GetParameters().Encodings {
		f.clocks.Delete(uint32(e.SSRC))
	}
}

// captured is when the packet of stream ssrc being written now was
// captured.
func (f *senderReports) captured(ssrc uint32) time.Time {
	if c, ok := f.clocks.Load(ssrc); ok {
		if ns := c.(*captureClock).ns.Load(); ns != 0 {
			return time.Unix(0, ns)
		}
	}
	return time.Now()
}

// registerInterceptors registers pion's default interceptors (NACK,
// receiver reports, simulcast headers, stats, TWCC) with these sender
// reports in place of pion's.
func registerInterceptors(m *webrtc.MediaEngine, reg *interceptor.Registry, sr *senderReports) error {
	if err := webrtc.ConfigureNack(m, reg); err != nil {
		return err
	}
	rr, err := report.NewReceiverInterceptor()
	if err != nil {
		return err
	}
	reg.Add(rr)
	reg.Add(sr)
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		return err
	}
	if err := webrtc.ConfigureStatsInterceptor(reg); err != nil {
		return err
	}
	return webrtc.ConfigureTWCCSender(m, reg)
}

// NewInterceptor makes the interceptor of one PeerConnection.
func (f *senderReports) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &reportInterceptor{f: f, stop: make(chan struct{})}, nil
}

// reportInterceptor sends the reports of one PeerConnection's streams.
type reportInterceptor struct {
	interceptor.NoOp
	f       *senderReports
	streams sync.Map // uint32 SSRC → *reportStream
	mu      sync.Mutex
	stopped bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

// reportStream is what a report says of one stream.
type reportStream struct {
	ssrc uint32
	rate float64
	mu   sync.Mutex
	sent bool
	seq  uint16    // the latest in-order sequence number
	rtp  uint32    // the latest frame's RTP time
	at   time.Time // when it was captured
	pkts uint32
	octs uint32
}

// BindLocalStream notes every packet of an outgoing stream.
func (r *reportInterceptor) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	s := &reportStream{ssrc: info.SSRC, rate: float64(info.ClockRate)}
	r.streams.Store(info.SSRC, s)
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		s.packet(h, len(payload), r.f.captured(info.SSRC))
		return w.Write(h, payload, a)
	})
}

// UnbindLocalStream forgets a stream.
func (r *reportInterceptor) UnbindLocalStream(info *interceptor.StreamInfo) {
	r.streams.Delete(info.SSRC)
}

// packet notes a packet captured at at. Only the first packet of each
// frame moves the RTP time, and only in order (a resent packet does not).
func (s *reportStream) packet(h *rtp.Header, size int, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := h.SequenceNumber - s.seq; !s.sent || (d > 0 && d < 1<<15) {
		s.seq = h.SequenceNumber
		if !s.sent || h.Timestamp != s.rtp {
			s.rtp, s.at = h.Timestamp, at
		}
	}
	s.sent = true
	s.pkts++
	s.octs += uint32(size)
}

// report is the stream's sender report at now, nil before its first
// packet (RFC 3550, 6.4: a source that has sent nothing sends none).
func (s *reportStream) report(now time.Time) *rtcp.SenderReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.sent {
		return nil
	}
	return &rtcp.SenderReport{
		SSRC: s.ssrc, NTPTime: ntpTime(now),
		RTPTime:     s.rtp + uint32(int64(math.Round(now.Sub(s.at).Seconds()*s.rate))),
		PacketCount: s.pkts, OctetCount: s.octs,
	}
}

// ntpTime is t as an NTP timestamp: seconds since 1900, 32.32 fixed point.
func ntpTime(t time.Time) uint64 {
	const ntpFromUnix = 2208988800
	ns := t.UnixNano()
	return uint64(ns/1e9+ntpFromUnix)<<32 | uint64(ns%1e9)<<32/1e9
}

// BindRTCPWriter starts sending the reports.
func (r *reportInterceptor) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.stopped {
		r.wg.Add(1)
		go r.loop(w)
	}
	return w
}

func (r *reportInterceptor) loop(w interceptor.RTCPWriter) {
	defer r.wg.Done()
	tick := time.NewTicker(senderReportInterval)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
			now := time.Now()
			r.streams.Range(func(_, v any) bool {
				if sr := v.(*reportStream).report(now); sr != nil {
					// A failed write (the connection closing) ends
					// nothing here: Close does.
					_, _ = w.Write([]rtcp.Packet{sr}, interceptor.Attributes{})
				}
				return true
			})
		}
	}
}

// Close stops the reports and waits for the loop.
func (r *reportInterceptor) Close() error {
	r.mu.Lock()
	if !r.stopped {
		r.stopped = true
		close(r.stop)
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}
