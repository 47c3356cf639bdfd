package vpx

import "testing"

func TestIsKeyFrameHeaders(t *testing.T) {
	cases := []struct {
		codec string
		frame []byte
		key   bool
	}{
		{VP8, []byte{0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01}, true}, // key: bit 0 clear, start code
		{VP8, []byte{0x51, 0x42, 0x00, 0x9d, 0x01, 0x2a}, false},            // inter frame
		{VP8, []byte{0x50, 0x42, 0x00, 0x00, 0x00, 0x00}, false},            // no start code
		{VP8, []byte{0x50}, false},
		{VP9, []byte{0x82, 0x49, 0x83}, true}, // marker 10, profile 0, show_existing 0, key
		{VP9, []byte{0x86, 0x00}, false},      // frame_type 1: inter
		{VP9, []byte{0x88, 0x00}, false},      // show_existing_frame
		{VP9, []byte{0xb1, 0x00}, true},       // profile 3: reserved bit, then key
		{VP9, []byte{0x42, 0x00}, false},      // bad frame marker
		{"video/H264", []byte{0x00}, false},
		{VP9, nil, false},
	}
	for i, c := range cases {
		if got := IsKeyFrame(c.codec, c.frame); got != c.key {
			t.Errorf("case %d (%s % x): key %v, want %v", i, c.codec, c.frame, got, c.key)
		}
	}
}

func FuzzIsKeyFrame(f *testing.F) {
	f.Add([]byte{0x82, 0x49, 0x83})
	f.Add([]byte{0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a})
	f.Fuzz(func(t *testing.T, b []byte) {
		IsKeyFrame(VP8, b)
		IsKeyFrame(VP9, b)
	})
}
