//go:build cgo

package vpx

import (
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// planes makes picture i of a moving pattern, tightly packed I420.
func planes(w, h, i int) (y, u, v []byte) {
	y = make([]byte, w*h)
	for r := 0; r < h; r++ {
		for c := 0; c < w; c++ {
			y[r*w+c] = byte(64 + 100*math.Sin(float64(c+3*i)/9)*math.Cos(float64(r)/13) + float64((c/32+r/32)%2)*40)
		}
	}
	cw, ch := (w+1)/2, (h+1)/2
	u, v = make([]byte, cw*ch), make([]byte, cw*ch)
	for j := range u {
		u[j], v[j] = byte(100+j%cw/4), byte(150-j/cw/4)
	}
	return y, u, v
}

// packed is a w×h picture of tightly packed planes.
func packed(w, h int, y, u, v []byte) *Image {
	cw := (w + 1) / 2
	return &Image{Width: w, Height: h, Y: y, U: u, V: v, YStride: w, UStride: cw, VStride: cw}
}

func lumaPSNR(img *Image, y []byte) float64 {
	var se float64
	for r := 0; r < img.Height; r++ {
		for c := 0; c < img.Width; c++ {
			d := float64(img.Y[r*img.YStride+c]) - float64(y[r*img.Width+c])
			se += d * d
		}
	}
	return 10 * math.Log10(255*255*float64(img.Width*img.Height)/math.Max(se, 1e-9))
}

func TestRoundTrip(t *testing.T) {
	for _, codec := range []string{VP8, VP9} {
		t.Run(codec, func(t *testing.T) {
			const w, h = 160, 120
			enc, err := NewEncoder(EncoderConfig{Codec: codec, Width: w, Height: h, FPS: 30, BitrateKbps: 800})
			if err != nil {
				t.Fatal(err)
			}
			defer enc.Close()
			dec, err := NewDecoder(codec)
			if err != nil {
				t.Fatal(err)
			}
			defer dec.Close()
			for i := 0; i < 12; i++ {
				y, u, v := planes(w, h, i)
				frame, isKey, err := enc.Encode(packed(w, h, y, u, v), i == 8)
				if err != nil || frame == nil {
					t.Fatalf("encode %d: %v (frame %v)", i, err, frame != nil)
				}
				if key := IsKeyFrame(codec, frame); key != (i == 0 || i == 8) || isKey != key {
					t.Errorf("frame %d: key frame %v, encoder says %v", i, key, isKey)
				}
				img, err := dec.Decode(frame)
				if err != nil || img == nil {
					t.Fatalf("decode %d: %v", i, err)
				}
				if img.Width != w || img.Height != h {
					t.Fatalf("decoded %dx%d", img.Width, img.Height)
				}
				if p := lumaPSNR(img, y); p < 30 {
					t.Errorf("frame %d: PSNR %.1f dB", i, p)
				}
			}
			if _, err := dec.Decode([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}); err == nil {
				t.Error("garbage decoded without error")
			}
		})
	}
	if _, err := NewDecoder("video/H264"); !errors.Is(err, ErrCodec) {
		t.Errorf("H.264 decoder: %v, want ErrCodec", err)
	}
	for _, name := range []string{"VP8", "vp8", "video/vp9", "VIDEO/VP9"} {
		d, err := NewDecoder(name)
		if err != nil {
			t.Errorf("NewDecoder(%q): %v", name, err)
			continue
		}
		if want := "video/" + strings.ToUpper(name[len(name)-3:]); d.Codec() != want {
			t.Errorf("NewDecoder(%q).Codec() = %q, want %q", name, d.Codec(), want)
		}
		d.Close()
	}
	if _, err := NewEncoder(EncoderConfig{Width: 15, Height: 16}); err == nil {
		t.Error("odd width accepted")
	}
}

// TestRefusesHugeFrames: a VP9 key frame (found by FuzzDecode) declaring a
// picture far over the limit is refused before libvpx allocates for it;
// decoding it took libvpx close to a minute.
func TestRefusesHugeFrames(t *testing.T) {
	b, err := os.ReadFile("testdata/fuzz/FuzzDecode/dd3a2653e89f261a")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	raw, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[2], "[]byte("), ")"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDecoder(VP9)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	start := time.Now()
	if _, err := d.Decode([]byte(raw)); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("huge frame: %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("refusing took %v", el)
	}
}
