package opus

import (
	"context"
	"io"
	"math"
	"time"

	pmedia "github.com/pion/webrtc/v4/pkg/media"
)

// ToneConfig describes a generated tone.
type ToneConfig struct {
	// Freq is the pitch in Hz (default 440).
	Freq float64
	// Amplitude is the peak, 0 to 1 (default 0.5).
	Amplitude float64
	// On, if set, says whether the tone sounds at wall time t; it is
	// silent otherwise. Tests use it to beep in step with another
	// source. Nil: it always sounds.
	On func(t time.Time) bool
	// Duration is how long the source lasts before io.EOF; 0 means no end.
	Duration time.Duration
}

// Tone frames: 20 ms of 48 kHz mono, the usual WebRTC packet.
const (
	toneRate  = 48000
	toneFrame = toneRate / 50
)

// ToneSource is a generated tone encoded with libopus, 20 ms a sample: a
// client.AudioSource. Sample k is generated for the wall time first + k ×
// 20 ms, where first is when NextSample was first called, and carries
// that time as its Timestamp: a publication's sender reports give it, so
// a receiver places the samples at the times On saw, however late the
// first was returned.
type ToneSource struct {
	cfg   ToneConfig
	enc   *Encoder
	pcm   []float32
	n     int // samples generated
	first time.Time
}

// NewTone makes a tone source. It needs libopus (ErrNoLibopus otherwise).
func NewTone(cfg ToneConfig) (*ToneSource, error) {
	if cfg.Freq <= 0 {
		cfg.Freq = 440
	}
	if cfg.Amplitude <= 0 || cfg.Amplitude > 1 {
		cfg.Amplitude = 0.5
	}
	enc, err := NewEncoder(1, 48000)
	if err != nil {
		return nil, err
	}
	return &ToneSource{cfg: cfg, enc: enc, pcm: make([]float32, toneFrame)}, nil
}

// MimeType is Opus.
func (s *ToneSource) MimeType() string { return MimeType }

// NextSample generates and encodes the next 20 ms.
func (s *ToneSource) NextSample(ctx context.Context) (pmedia.Sample, error) {
	if err := ctx.Err(); err != nil {
		return pmedia.Sample{}, err
	}
	if s.first.IsZero() {
		s.first = time.Now()
	}
	if d := s.cfg.Duration; d > 0 && time.Duration(s.n)*time.Second/toneRate >= d {
		return pmedia.Sample{}, io.EOF
	}
	start := s.first.Add(time.Duration(s.n) * time.Second / toneRate)
	for i := range s.pcm {
		at := s.first.Add(time.Duration(s.n+i) * time.Second / toneRate)
		if s.cfg.On != nil && !s.cfg.On(at) {
			s.pcm[i] = 0
			continue
		}
		s.pcm[i] = float32(s.cfg.Amplitude * math.Sin(2*math.Pi*s.cfg.Freq*float64(s.n+i)/toneRate))
	}
	s.n += toneFrame
	pkt, err := s.enc.Encode(s.pcm)
	if err != nil {
		return pmedia.Sample{}, err
	}
	return pmedia.Sample{Data: append([]byte(nil), pkt...), Timestamp: start, Duration: 20 * time.Millisecond}, nil
}

// Close frees the encoder.
func (s *ToneSource) Close() error { return s.enc.Close() }
