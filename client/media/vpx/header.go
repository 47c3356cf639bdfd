package vpx

import (
	"errors"
	"fmt"
)

// Frame headers. libvpx allocates for the picture size a frame declares
// as soon as it reads it, before it finds out whether the rest of the
// frame makes sense: a few bytes declaring 16384×16384 cost it 800 MB
// and seconds. So Decode reads every size libvpx would read first.
//
// A VP8 frame is one frame, and only a key frame declares a size (RFC
// 6386 section 9.1). A VP9 frame may hold several: a superframe lists
// them in an index at its end (VP9 bitstream spec, annex B), and without
// an index libvpx decodes whatever follows the first frame's data as
// another frame, which cannot be known without decoding it. So a VP9
// frame without an index is given one, of that one frame, and libvpx
// decodes exactly the frames Decode checked. A key frame, an intra-only
// frame, and an inter frame that does not take its size from a reference
// frame declare a size (spec section 6.2); a reference frame's size was
// checked when it was decoded.

// ErrTooLarge: a frame declares a picture over MaxSide or MaxPixels.
var ErrTooLarge = errors.New("vpx: frame declares a picture over the size limit")

// errSuperframe: a VP9 frame ends in what starts a superframe index, but
// the index is not whole (libvpx refuses it too).
var errSuperframe = errors.New("vpx: broken VP9 superframe index")

// checkSize refuses a declared size over the limits.
func checkSize(w, h int) error {
	if w > MaxSide || h > MaxSide || w*h > MaxPixels {
		return fmt.Errorf("%w: %dx%d, over %dx%d or %d pixels", ErrTooLarge, w, h, MaxSide, MaxSide, MaxPixels)
	}
	return nil
}

// checkVP8 checks a VP8 frame's declared size. A key frame too short to
// hold its size is refused: libvpx would read the size past its end.
func checkVP8(frame []byte) error {
	if len(frame) < 3 || frame[0]&1 != 0 {
		return nil // libvpx refuses the first; an inter frame declares no size
	}
	if len(frame) < 10 {
		return fmt.Errorf("vpx: VP8 key frame of %d bytes", len(frame))
	}
	return checkSize(int(frame[6])|int(frame[7]&0x3f)<<8, int(frame[8])|int(frame[9]&0x3f)<<8)
}

// vp9Frames splits a VP9 frame into the frames libvpx decodes from it, as
// libvpx's vp9_parse_superframe_index does: by its superframe index, whose
// last byte is 110mmfff (m+1 bytes a size, f+1 frames) and which starts
// with the same byte; frames past the data are left out (libvpx stops
// with an error there). indexed is false when there is no index: then
// the frame is the one frame.
func vp9Frames(data []byte) (frames [][]byte, indexed bool, err error) {
	marker := data[len(data)-1]
	if marker&0xe0 != 0xc0 {
		return [][]byte{data}, false, nil
	}
	n, mag := int(marker&7)+1, int(marker>>3&3)+1
	size := 2 + mag*n
	if len(data) < size || data[len(data)-size] != marker {
		return nil, true, errSuperframe
	}
	index := data[len(data)-size+1:]
	rest := data
	for i := range n {
		sz := 0
		for j := range mag {
			sz |= int(index[i*mag+j]) << (8 * j)
		}
		if sz > len(rest) {
			break
		}
		frames = append(frames, rest[:sz])
		rest = rest[sz:]
	}
	return frames, true, nil
}

// vp9Index appends to buf a superframe index of one frame of n bytes.
func vp9Index(buf []byte, n int) []byte {
	const marker = 0xc0 | 3<<3 // 4 bytes a size, 1 frame
	return append(buf, marker, byte(n), byte(n>>8), byte(n>>16), byte(n>>24), marker)
}

// checkVP9 checks the size each frame of a VP9 frame declares.
func checkVP9(data []byte) (indexed bool, err error) {
	frames, indexed, err := vp9Frames(data)
	if err != nil {
		return indexed, err
	}
	for _, f := range frames {
		if w, h, ok := vp9Size(f); ok {
			if err := checkSize(w, h); err != nil {
				return indexed, err
			}
		}
	}
	return indexed, nil
}

// bits reads a byte string most significant bit first; past its end it
// reads zeros and notes that it was short.
type bits struct {
	b     []byte
	pos   int
	short bool
}

func (r *bits) read(n int) uint32 {
	var v uint32
	for range n {
		if r.pos >= 8*len(r.b) {
			r.short = true
			return 0
		}
		v = v<<1 | uint32(r.b[r.pos/8]>>(7-r.pos%8)&1)
		r.pos++
	}
	return v
}

const vp9SyncCode = 0x498342

// vp9Size reads the picture size a VP9 frame's uncompressed header
// declares (spec section 6.2, as libvpx's read_uncompressed_header reads
// it); ok is false when it declares none: a frame shown again, an inter
// frame that takes a reference frame's size, or a header that ends (or
// goes wrong) before a size, where libvpx stops too.
func vp9Size(frame []byte) (w, h int, ok bool) {
	r := &bits{b: frame}
	if r.read(2) != 2 { // frame_marker
		return 0, 0, false
	}
	low := r.read(1)
	profile := r.read(1)<<1 | low
	if profile == 3 {
		r.read(1) // reserved_zero
	}
	if r.read(1) == 1 { // show_existing_frame
		return 0, 0, false
	}
	key := r.read(1) == 0
	show := r.read(1) == 1
	errorResilient := r.read(1) == 1
	switch {
	case key:
		if r.read(24) != vp9SyncCode {
			return 0, 0, false
		}
		vp9ColorConfig(r, profile)
	default:
		intraOnly := !show && r.read(1) == 1
		if !errorResilient {
			r.read(2) // reset_frame_context
		}
		if intraOnly {
			if r.read(24) != vp9SyncCode {
				return 0, 0, false
			}
			if profile > 0 {
				vp9ColorConfig(r, profile)
			}
			r.read(8) // refresh_frame_flags
			break
		}
		r.read(8)     // refresh_frame_flags
		r.read(3 * 4) // ref_frame_idx (3 bits) and ref_frame_sign_bias, for 3 references
		for range 3 {
			if r.read(1) == 1 { // found_ref: the size of a reference frame
				return 0, 0, false
			}
		}
	}
	w, h = int(r.read(16))+1, int(r.read(16))+1
	return w, h, !r.short
}

// vp9ColorConfig reads past color_config (spec section 6.2.2).
func vp9ColorConfig(r *bits, profile uint32) {
	if profile >= 2 {
		r.read(1) // ten_or_twelve_bit
	}
	const csRGB = 7
	if r.read(3) != csRGB {
		r.read(1) // color_range
		if profile == 1 || profile == 3 {
			r.read(3) // subsampling_x, subsampling_y, reserved_zero
		}
	} else if profile == 1 || profile == 3 {
		r.read(1) // reserved_zero
	}
}
