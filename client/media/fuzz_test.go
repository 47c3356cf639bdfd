//go:build cgo

package media

import (
	"context"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the VP8 decoder: it must answer with
// a picture or an error, never crash. The seeds are real frames.
func FuzzDecode(f *testing.F) {
	p, err := NewTestPattern(PatternConfig{Frames: 3})
	if err != nil {
		f.Fatal(err)
	}
	defer p.Close()
	for i := 0; i < 3; i++ {
		s, err := p.NextSample(context.Background())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(s.Data)
	}
	f.Add([]byte{0x9d, 0x01, 0x2a})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := NewDecoder(MimeTypeVP8)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		img, err := d.Decode(b)
		if err == nil && img != nil {
			if _, ok := ReadCounter(img); ok && len(b) < 10 {
				t.Fatalf("%d bytes decoded to a readable counter", len(b))
			}
		}
	})
}
