//go:build cgo

package vpx

import "testing"

// FuzzDecode feeds arbitrary bytes to both decoders, after a valid key
// frame so that inter-frame paths are reached too: libvpx must return an
// error or a picture whose planes hold its size, never crash.
func FuzzDecode(f *testing.F) {
	for _, codec := range []string{VP8, VP9} {
		enc, err := NewEncoder(EncoderConfig{Codec: codec, Width: 64, Height: 48, FPS: 30, BitrateKbps: 300})
		if err != nil {
			f.Fatal(err)
		}
		y, u, v := planes(64, 48, 0)
		key, _, err := enc.Encode(packed(64, 48, y, u, v), true)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(codec == VP9, append([]byte(nil), key...))
		y, u, v = planes(64, 48, 1)
		inter, _, _ := enc.Encode(packed(64, 48, y, u, v), false)
		f.Add(codec == VP9, append([]byte(nil), inter...))
		enc.Close()
	}
	f.Fuzz(func(t *testing.T, vp9 bool, frame []byte) {
		codec := VP8
		if vp9 {
			codec = VP9
		}
		d, err := NewDecoder(codec)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		for i := 0; i < 2; i++ {
			img, err := d.Decode(frame)
			if err != nil || img == nil {
				continue
			}
			if img.Width < 1 || img.Height < 1 || len(img.Y) < (img.Height-1)*img.YStride+img.Width {
				t.Fatalf("picture %dx%d with %d luma bytes", img.Width, img.Height, len(img.Y))
			}
			_ = IsKeyFrame(codec, frame)
		}
	})
}
