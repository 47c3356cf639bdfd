//go:build cgo

package opus

import (
	"context"
	"math"
	"testing"
	"time"
)

// TestToneRoundTrip: a 1 kHz tone encoded at 48 kHz decodes at 16 kHz
// mono with its pitch and level, 320 samples per 20 ms packet; a lost
// packet is concealed with as many samples.
func TestToneRoundTrip(t *testing.T) {
	src, err := NewTone(ToneConfig{Freq: 1000, Amplitude: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dec, err := NewDecoder(16000, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	out := make([]float32, MaxSamples(16000))
	var pcm []float32
	for range 50 {
		s, err := src.NextSample(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if s.Duration != 20*time.Millisecond || len(s.Data) == 0 || len(s.Data) > MaxPacketBytes {
			t.Fatalf("sample of %v, %d bytes", s.Duration, len(s.Data))
		}
		n, err := dec.Decode(s.Data, out)
		if err != nil || n != 320 {
			t.Fatalf("decoded %d samples: %v", n, err)
		}
		pcm = append(pcm, out[:n]...)
	}
	// Skip the codec's start-up, then measure: zero crossings give the
	// pitch, the RMS the level (0.5/√2 for a sine of peak 0.5).
	pcm = pcm[1600:]
	crossings, sum := 0, 0.0
	for i, v := range pcm {
		sum += float64(v) * float64(v)
		if i > 0 && (pcm[i-1] < 0) != (v < 0) {
			crossings++
		}
	}
	secs := float64(len(pcm)) / 16000
	if f := float64(crossings) / 2 / secs; math.Abs(f-1000) > 20 {
		t.Errorf("pitch %.0f Hz, want 1000", f)
	}
	if rms := math.Sqrt(sum / float64(len(pcm))); math.Abs(rms-0.5/math.Sqrt2) > 0.05 {
		t.Errorf("RMS %.3f, want %.3f", rms, 0.5/math.Sqrt2)
	}
	n, err := dec.Decode(nil, out[:320])
	if err != nil || n != 320 {
		t.Errorf("concealment: %d samples, %v", n, err)
	}
}

// TestToneSchedule: sample k of a tone is made for the wall time of its
// first call plus k × 20 ms, 960 ticks of the RTP clock apart, whenever it
// is asked for, and stamped with that time: On sees the times the sender
// reports give the audio, so a beep can be put at a known time.
func TestToneSchedule(t *testing.T) {
	var asked []time.Time
	src, err := NewTone(ToneConfig{On: func(at time.Time) bool { asked = append(asked, at); return true }})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	before := time.Now()
	var stamps []time.Time
	for range 3 {
		s, err := src.NextSample(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		stamps = append(stamps, s.Timestamp)
	}
	if len(asked) != 3*960 {
		t.Fatalf("On asked %d times for 3 packets, want %d", len(asked), 3*960)
	}
	first := asked[0]
	if first.Before(before) || first.After(time.Now()) {
		t.Fatalf("first sample for %v, want the first call's time (after %v)", first, before)
	}
	for k := range 3 {
		if got, want := asked[k*960].Sub(first), time.Duration(k)*20*time.Millisecond; got != want {
			t.Errorf("packet %d made for first + %v, want + %v", k, got, want)
		}
		if !stamps[k].Equal(asked[k*960]) {
			t.Errorf("packet %d stamped %v, made for %v", k, stamps[k], asked[k*960])
		}
	}
}

// TestDecodeRefuses: an oversized packet and garbage are errors, not
// crashes, and the decoder keeps working.
func TestDecodeRefuses(t *testing.T) {
	dec, err := NewDecoder(16000, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	out := make([]float32, MaxSamples(16000))
	if _, err := dec.Decode(make([]byte, MaxPacketBytes+1), out); err == nil {
		t.Error("an oversized packet was decoded")
	}
	if _, err := dec.Decode([]byte{0xff, 0xff, 0xff}, out); err == nil {
		t.Error("garbage was decoded")
	}
	if _, err := dec.Decode([]byte{0xfc, 0xff, 0xfe}, out[:10]); err == nil {
		t.Error("a packet larger than the output was decoded")
	}
	if _, err := NewDecoder(44100, 1); err == nil {
		t.Error("a rate libopus does not offer was accepted")
	}
}

// FuzzDecode: whatever a peer sends, Decode returns an error or at most
// MaxSamples samples, and never crashes.
func FuzzDecode(f *testing.F) {
	src, err := NewTone(ToneConfig{})
	if err != nil {
		f.Fatal(err)
	}
	s, err := src.NextSample(context.Background())
	src.Close()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(s.Data)
	f.Add([]byte{0xfc, 0xff, 0xfe})
	f.Fuzz(func(t *testing.T, packet []byte) {
		dec, err := NewDecoder(16000, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer dec.Close()
		out := make([]float32, MaxSamples(16000))
		n, err := dec.Decode(packet, out)
		if err == nil && (n < 0 || n > len(out)) {
			t.Fatalf("%d samples from %d bytes", n, len(packet))
		}
	})
}
