//go:build cgo

package vpx

import (
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
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

// setBits writes v, n bits, most significant first, at bit offset off.
func setBits(b []byte, off, n int, v uint32) {
	for i := range n {
		p := off + i
		b[p/8] &^= 0x80 >> (p % 8)
		b[p/8] |= byte(v>>(n-1-i)&1) << (7 - p%8)
	}
}

// superframe joins VP9 frames with an index (4 bytes a size).
func superframe(frames ...[]byte) []byte {
	var out []byte
	for _, f := range frames {
		out = append(out, f...)
	}
	marker := byte(0xc0 | 3<<3 | (len(frames) - 1))
	out = append(out, marker)
	for _, f := range frames {
		out = append(out, byte(len(f)), byte(len(f)>>8), byte(len(f)>>16), byte(len(f)>>24))
	}
	return append(out, marker)
}

// peakRSS is the process's peak resident memory, in bytes.
func peakRSS(t *testing.T) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return ru.Maxrss << 10
}

// TestRefusesHiddenHugeFrames: a VP9 frame that hides a picture over the
// limit behind a small key frame is refused, or decoded without it,
// before libvpx allocates for it. The check used to read the first
// frame's header only: a 16384×16384 key frame second in a superframe
// cost libvpx 800 MB and 3 s, and an inter or intra-only frame that
// declares its own size was not read at all.
func TestRefusesHiddenHugeFrames(t *testing.T) {
	enc, err := NewEncoder(EncoderConfig{Codec: VP9, Width: 64, Height: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	y, u, v := planes(64, 64, 0)
	key, _, err := enc.Encode(packed(64, 64, y, u, v), true)
	if err != nil {
		t.Fatal(err)
	}
	key = append([]byte(nil), key...)
	// Profile 0: frame_marker to error_resilient_mode (8 bits), the sync
	// code (24), color_space and color_range (4), then the size.
	if w, h, ok := vp9Size(key); !ok || w != 64 || h != 64 {
		t.Fatalf("the key frame's header reads %dx%d (%v)", w, h, ok)
	}
	huge := append([]byte(nil), key...)
	setBits(huge, 36, 16, 16384-1)
	setBits(huge, 52, 16, 16384-1)
	// An inter frame (profile 0, shown, not error resilient) that takes
	// no reference frame's size: 2 bits reset_frame_context, 8
	// refresh_frame_flags, 12 of references, 3 found_ref, then the size.
	inter := make([]byte, 64)
	inter[0] = 0x86
	setBits(inter, 8+2+8+12+3, 16, 16384-1)
	setBits(inter, 8+2+8+12+3+16, 16, 9216-1)
	// An intra-only frame (not shown): intra_only, reset_frame_context,
	// the sync code, refresh_frame_flags, then the size.
	intra := make([]byte, 64)
	intra[0] = 0x84
	setBits(intra, 8, 1, 1)
	setBits(intra, 11, 24, vp9SyncCode)
	setBits(intra, 11+24+8, 16, 8192-1)
	setBits(intra, 11+24+8+16, 16, 8192-1)
	cases := []struct {
		name    string
		frame   []byte
		refused bool
	}{
		{"key frame second in a superframe", superframe(key, huge), true},
		{"inter frame second in a superframe", superframe(key, inter), true},
		{"intra-only frame first in a superframe", superframe(intra, key), true},
		{"inter frame alone", inter, true},
		// Without an index libvpx decoded what follows the first frame's
		// data as another frame; now only the first is decoded.
		{"key frame after the first, no index", append(append([]byte(nil), key...), huge...), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := NewDecoder(VP9)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if _, err := d.Decode(key); err != nil {
				t.Fatal(err)
			}
			before := peakRSS(t)
			img, err := d.Decode(c.frame)
			if grew := peakRSS(t) - before; grew > 100<<20 {
				t.Errorf("peak memory grew by %d MB", grew>>20)
			}
			switch {
			case c.refused && !errors.Is(err, ErrTooLarge):
				t.Errorf("not refused: %v", err)
			case !c.refused && err != nil:
				t.Errorf("the first frame not decoded: %v", err)
			case !c.refused && (img == nil || img.Width != 64 || img.Height != 64):
				t.Errorf("decoded %+v, want the first frame's 64x64", img)
			}
		})
	}
}

// TestVP8KeyFrameSizes: a VP8 key frame declaring 16383×16383 is refused,
// and so is one too short to hold its size, which libvpx would read past
// the frame's end.
func TestVP8KeyFrameSizes(t *testing.T) {
	d, err := NewDecoder(VP8)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	huge := []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0xff, 0x3f, 0xff, 0x3f, 0, 0, 0, 0}
	if _, err := d.Decode(huge); !errors.Is(err, ErrTooLarge) {
		t.Errorf("16383x16383 key frame: %v", err)
	}
	if _, err := d.Decode(huge[:8]); err == nil {
		t.Error("a key frame of 8 bytes decoded")
	}
}
