package recorder

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// A contact sheet is a PNG grid of some of a clip's frames, each captioned
// with its time from the start of the clip, so a person can check a
// recording at a glance without numpy.
const (
	sheetCells   = 16  // frames shown per clip, at most
	sheetCols    = 4   // grid columns
	sheetThumb   = 128 // thumbnails are halved until their sides fit this
	sheetCaption = 14  // caption strip height in pixels
	fontScale    = 2   // the 3×5 font drawn at 2×
)

// sheet collects thumbnails while a clip is written.
type sheet struct {
	every  int // keep one frame in every
	w, h   int // thumbnail size
	halves int // how many times frames are halved
	thumbs [][]byte
	times  []int64 // capture time from the clip's first frame, µs
	frames []int
}

func newSheet(frame Size, clipFrames int) *sheet {
	s := &sheet{every: max(1, (clipFrames+sheetCells-1)/sheetCells), w: frame.W, h: frame.H}
	for (s.w > sheetThumb || s.h > sheetThumb) && s.w > 1 && s.h > 1 {
		s.w, s.h = s.w/2, s.h/2
		s.halves++
	}
	return s
}

// add offers frame i (RGB at the clip's size) captured at t µs after the
// clip's first frame; every s.every'th is kept.
func (s *sheet) add(i int, rgb []byte, full Size, t int64) {
	if i%s.every != 0 || len(s.thumbs) >= sheetCells {
		return
	}
	th := make([]byte, s.w*s.h*3)
	f := 1 << s.halves
	for y := 0; y < s.h; y++ {
		for x := 0; x < s.w; x++ {
			// Average the f×f block; f is small and this runs for 16 frames a clip.
			var acc [3]int
			for dy := 0; dy < f; dy++ {
				p := rgb[((y*f+dy)*full.W+x*f)*3:]
				for dx := 0; dx < f; dx++ {
					acc[0] += int(p[dx*3])
					acc[1] += int(p[dx*3+1])
					acc[2] += int(p[dx*3+2])
				}
			}
			o := th[(y*s.w+x)*3:]
			for c := range acc {
				o[c] = uint8(acc[c] / (f * f))
			}
		}
	}
	s.thumbs = append(s.thumbs, th)
	s.times = append(s.times, t)
	s.frames = append(s.frames, i)
}

// png renders the sheet. It returns nil when no frame was kept.
func (s *sheet) png() ([]byte, error) {
	n := len(s.thumbs)
	if n == 0 {
		return nil, nil
	}
	cols := min(sheetCols, n)
	rows := (n + cols - 1) / cols
	const gap = 2
	cellW, cellH := s.w+gap, s.h+sheetCaption+gap
	img := rgbImage{w: cols*cellW + gap, h: rows*cellH + gap}
	img.pix = bytes.Repeat([]byte{40}, img.w*img.h*3) // dark grey background
	for i, th := range s.thumbs {
		x0, y0 := gap+(i%cols)*cellW, gap+(i/cols)*cellH
		for y := 0; y < s.h; y++ {
			o := ((y0+y)*img.w + x0) * 3
			copy(img.pix[o:o+s.w*3], th[y*s.w*3:(y+1)*s.w*3])
		}
		label := fmt.Sprintf("#%d +%.2fs", s.frames[i], float64(s.times[i])/1e6)
		img.text(x0+1, y0+s.h+2, label)
	}
	var buf bytes.Buffer
	if err := img.encodePNG(&buf); err != nil {
		return nil, fmt.Errorf("recorder: contact sheet: %w", err)
	}
	return buf.Bytes(), nil
}

// rgbImage is packed 8-bit RGB.
type rgbImage struct {
	w, h int
	pix  []byte
}

// encodePNG writes the image as an 8-bit truecolour PNG (RFC 2083). Every
// row uses the Up filter and zlib's fastest level: image/png tries five
// filters a row, which costs more than the rest of a clip's bookkeeping.
func (m *rgbImage) encodePNG(w io.Writer) error {
	var ihdr [13]byte
	binary.BigEndian.PutUint32(ihdr[0:], uint32(m.w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(m.h))
	ihdr[8], ihdr[9] = 8, 2 // bit depth, colour type truecolour
	var idat bytes.Buffer
	zw, err := zlib.NewWriterLevel(&idat, zlib.BestSpeed)
	if err != nil {
		return err
	}
	stride := m.w * 3
	row := make([]byte, 1+stride)
	prev := make([]byte, stride)
	for y := 0; y < m.h; y++ {
		cur := m.pix[y*stride : (y+1)*stride]
		row[0] = 2 // Up
		for i, c := range cur {
			row[1+i] = c - prev[i]
		}
		if _, err := zw.Write(row); err != nil {
			return err
		}
		prev = cur
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if _, err := w.Write([]byte("\x89PNG\r\n\x1a\n")); err != nil {
		return err
	}
	for _, c := range []struct {
		typ  string
		data []byte
	}{{"IHDR", ihdr[:]}, {"IDAT", idat.Bytes()}, {"IEND", nil}} {
		var head [8]byte
		binary.BigEndian.PutUint32(head[:], uint32(len(c.data)))
		copy(head[4:], c.typ)
		crc := crc32.NewIEEE()
		crc.Write(head[4:])
		crc.Write(c.data)
		var tail [4]byte
		binary.BigEndian.PutUint32(tail[:], crc.Sum32())
		for _, b := range [][]byte{head[:], c.data, tail[:]} {
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
	}
	return nil
}

// font3x5 is a tiny built-in bitmap font, so sheets need no font files:
// each glyph is five rows of three bits, high bit on the left.
var font3x5 = map[rune][5]uint8{
	'0': {7, 5, 5, 5, 7}, '1': {2, 6, 2, 2, 7}, '2': {7, 1, 7, 4, 7},
	'3': {7, 1, 3, 1, 7}, '4': {5, 5, 7, 1, 1}, '5': {7, 4, 7, 1, 7},
	'6': {7, 4, 7, 5, 7}, '7': {7, 1, 2, 2, 2}, '8': {7, 5, 7, 5, 7},
	'9': {7, 5, 7, 1, 7}, '.': {0, 0, 0, 0, 2}, 's': {0, 3, 6, 3, 6},
	'+': {0, 2, 7, 2, 0}, '-': {0, 0, 7, 0, 0}, '#': {5, 7, 5, 7, 5},
	':': {0, 2, 0, 2, 0}, ' ': {},
}

// text draws s in white at (x, y), clipped to the image; unknown runes are
// drawn as blanks.
func (m *rgbImage) text(x, y int, s string) {
	for _, r := range s {
		g := font3x5[r]
		for row := 0; row < 5; row++ {
			for col := 0; col < 3; col++ {
				if g[row]&(4>>col) == 0 {
					continue
				}
				for dy := 0; dy < fontScale; dy++ {
					for dx := 0; dx < fontScale; dx++ {
						px, py := x+col*fontScale+dx, y+row*fontScale+dy
						if px < 0 || py < 0 || px >= m.w || py >= m.h {
							continue
						}
						o := (py*m.w + px) * 3
						m.pix[o], m.pix[o+1], m.pix[o+2] = 255, 255, 255
					}
				}
			}
		}
		x += 4 * fontScale
	}
}
