package recorder

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/khadga/khadga/client/recorder/yuv"
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

// Sheet geometry: cells of a thumbnail and its caption, gap pixels apart.
const sheetGap = 2

// sheet draws kept frames' thumbnails straight into their cells of the
// sheet while a clip is written; captions are drawn and the PNG encoded
// when the clip ends. Its canvas and encoder come from sheetPool and go
// back with release, so a clip's sheet allocates nothing large.
type sheet struct {
	every  int // keep one frame in every
	w, h   int // thumbnail size
	halves int // how many times frames are halved
	buf    *sheetBuf
	img    rgbImage // the grid at its largest, sheetCells cells
	times  []int64  // capture time from the clip's first frame, µs
	frames []int
}

// sheetBuf is the reusable part of a sheet.
type sheetBuf struct {
	pix     []byte
	scratch []byte // halvings before the last, for frames over twice the thumbnail
	zw      *zlib.Writer
	chunk   *chunkWriter
}

var sheetPool sync.Pool // of *sheetBuf

func newSheet(frame Size, clipFrames int) *sheet {
	s := &sheet{every: max(1, (clipFrames+sheetCells-1)/sheetCells), w: frame.W, h: frame.H}
	for (s.w > sheetThumb || s.h > sheetThumb) && s.w > 1 && s.h > 1 {
		s.w, s.h = s.w/2, s.h/2
		s.halves++
	}
	cols, rows := sheetCols, (sheetCells+sheetCols-1)/sheetCols
	s.img = rgbImage{w: cols*s.cellW() + sheetGap, h: rows*s.cellH() + sheetGap}
	s.img.stride = s.img.w * 3
	b, _ := sheetPool.Get().(*sheetBuf)
	if b == nil {
		b = &sheetBuf{chunk: &chunkWriter{typ: "IDAT"}}
		b.zw, _ = zlib.NewWriterLevel(b.chunk, zlib.NoCompression) // a valid level: no error
	}
	if n := s.img.stride * s.img.h; cap(b.pix) < n {
		b.pix = make([]byte, n)
	}
	s.buf = b
	s.img.pix = b.pix[:s.img.stride*s.img.h]
	for i := range s.img.pix {
		s.img.pix[i] = 40 // dark grey background
	}
	return s
}

func (s *sheet) cellW() int { return s.w + sheetGap }
func (s *sheet) cellH() int { return s.h + sheetCaption + sheetGap }

// cell is the top left corner of cell i.
func (s *sheet) cell(i int) (x, y int) {
	return sheetGap + (i%sheetCols)*s.cellW(), sheetGap + (i/sheetCols)*s.cellH()
}

// add offers frame i (RGB at the clip's size) captured at t µs after the
// clip's first frame; every s.every'th is kept.
func (s *sheet) add(i int, rgb []byte, full Size, t int64) {
	if s.buf == nil || i%s.every != 0 || len(s.frames) >= sheetCells {
		return
	}
	x0, y0 := s.cell(len(s.frames))
	dst := s.img.pix[y0*s.img.stride+x0*3:]
	w, h, stride := full.W, full.H, full.W*3
	if s.halves == 0 {
		for y := 0; y < h; y++ {
			copy(dst[y*s.img.stride:y*s.img.stride+w*3], rgb[y*stride:])
		}
	}
	for k := range s.halves {
		if k == s.halves-1 { // the last halving lands in the cell
			halve(dst, s.img.stride, rgb, stride, w, h)
			break
		}
		n := (w / 2) * (h / 2) * 3
		if cap(s.buf.scratch) < 2*n {
			s.buf.scratch = make([]byte, 2*n)
		}
		out := s.buf.scratch[(k%2)*n : (k%2+1)*n] // alternate halves: never read and write one
		halve(out, (w/2)*3, rgb, stride, w, h)
		rgb, w, h, stride = out, w/2, h/2, (w/2)*3
	}
	s.times = append(s.times, t)
	s.frames = append(s.frames, i)
}

// halve is halveRGB with libyuv's SIMD rows where the build has them (the
// same rounded means, ten times faster).
func halve(dst []byte, dstStride int, src []byte, srcStride, w, h int) {
	if yuv.HalveRGB(dst, dstStride, src, srcStride, w&^1, h&^1) != nil {
		halveRGB(dst, dstStride, src, srcStride, w, h)
	}
}

// halveRGB writes the rounded 2×2 box average of the w×h packed RGB
// picture src into dst, (w/2)×(h/2); rows are the strides apart.
func halveRGB(dst []byte, dstStride int, src []byte, srcStride, w, h int) {
	ow := w / 2
	for y := 0; y < h/2; y++ {
		r0 := src[2*y*srcStride : 2*y*srcStride+w*3]
		r1 := src[(2*y+1)*srcStride : (2*y+1)*srcStride+w*3]
		o := dst[y*dstStride : y*dstStride+ow*3]
		for x := 0; x+2 < len(o); x += 3 {
			a, b := r0[2*x:2*x+6:2*x+6], r1[2*x:2*x+6:2*x+6]
			o[x] = uint8((int(a[0]) + int(a[3]) + int(b[0]) + int(b[3]) + 2) >> 2)
			o[x+1] = uint8((int(a[1]) + int(a[4]) + int(b[1]) + int(b[4]) + 2) >> 2)
			o[x+2] = uint8((int(a[2]) + int(a[5]) + int(b[2]) + int(b[5]) + 2) >> 2)
		}
	}
}

// writePNG captions the kept frames and writes the sheet as a PNG, only as
// many cells wide and tall as it needs. It writes nothing and returns
// false when no frame was kept.
func (s *sheet) writePNG(w io.Writer) (bool, error) {
	n := len(s.frames)
	if n == 0 || s.buf == nil {
		return false, nil
	}
	cols := min(sheetCols, n)
	rows := (n + cols - 1) / cols
	for i := range n {
		x0, y0 := s.cell(i)
		s.img.text(x0+1, y0+s.h+2, fmt.Sprintf("#%d +%.2fs", s.frames[i], float64(s.times[i])/1e6))
	}
	sub := rgbImage{w: cols*s.cellW() + sheetGap, h: rows*s.cellH() + sheetGap, stride: s.img.stride, pix: s.img.pix}
	if err := sub.encodePNG(w, s.buf.zw, s.buf.chunk); err != nil {
		return false, fmt.Errorf("recorder: contact sheet: %w", err)
	}
	return true, nil
}

// png returns the sheet as a PNG file's bytes, or nil when no frame was kept.
func (s *sheet) png() ([]byte, error) {
	var b bytes.Buffer
	ok, err := s.writePNG(&b)
	if !ok {
		return nil, err
	}
	return b.Bytes(), err
}

// release hands the canvas and encoder back for the next clip's sheet.
func (s *sheet) release() {
	if s.buf != nil {
		sheetPool.Put(s.buf)
		s.buf, s.img.pix = nil, nil
	}
}

// rgbImage is packed 8-bit RGB, rows stride bytes apart.
type rgbImage struct {
	w, h   int
	stride int
	pix    []byte
}

// encodePNG writes the image as an 8-bit truecolour PNG (RFC 2083) with zw,
// a zlib writer storing without compression, on chunk. Measured on a sheet
// of 224×224 frames: stored, 2 ms and 0.7 MB (a 150-frame clip is 22.6 MB);
// Huffman-only, 4 ms and 0.39 MB; zlib's fastest, 10 ms and 0.30 MB;
// image/png, which tries five filters a row, more. Rows are unfiltered,
// since filters only help compression. The data goes out as IDAT chunks of
// up to chunkData bytes.
func (m *rgbImage) encodePNG(w io.Writer, zw *zlib.Writer, chunk *chunkWriter) error {
	var ihdr [13]byte
	binary.BigEndian.PutUint32(ihdr[0:], uint32(m.w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(m.h))
	ihdr[8], ihdr[9] = 8, 2 // bit depth, colour type truecolour
	if _, err := w.Write([]byte("\x89PNG\r\n\x1a\n")); err != nil {
		return err
	}
	if err := writeChunk(w, "IHDR", ihdr[:]); err != nil {
		return err
	}
	chunk.reset(w)
	zw.Reset(chunk)
	row := make([]byte, 1+m.w*3) // row[0] = 0: filter None
	for y := 0; y < m.h; y++ {
		copy(row[1:], m.pix[y*m.stride:y*m.stride+m.w*3])
		if _, err := zw.Write(row); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := chunk.flush(); err != nil {
		return err
	}
	return writeChunk(w, "IEND", nil)
}

// chunkData is the most data one IDAT chunk carries.
const chunkData = 64 << 10

// chunkWriter cuts what is written to it into PNG chunks of one type, each
// sent to w with one Write.
type chunkWriter struct {
	typ string
	w   io.Writer
	buf []byte // length, type, data and room for the CRC
	err error
}

func (c *chunkWriter) reset(w io.Writer) {
	if c.buf == nil {
		c.buf = make([]byte, 8, 8+chunkData+4)
	}
	c.w, c.buf, c.err = w, c.buf[:8], nil
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && c.err == nil {
		k := copy(c.buf[len(c.buf):8+chunkData], p)
		c.buf, p = c.buf[:len(c.buf)+k], p[k:]
		if len(c.buf) == 8+chunkData {
			c.err = c.flush()
		}
	}
	if c.err != nil {
		return 0, c.err
	}
	return n, nil
}

// flush sends the buffered data as a chunk, if there is any.
func (c *chunkWriter) flush() error {
	if len(c.buf) == 8 {
		return nil
	}
	binary.BigEndian.PutUint32(c.buf, uint32(len(c.buf)-8))
	copy(c.buf[4:8], c.typ)
	c.buf = binary.BigEndian.AppendUint32(c.buf, crc32.ChecksumIEEE(c.buf[4:]))
	_, err := c.w.Write(c.buf)
	c.buf = c.buf[:8]
	return err
}

// writeChunk writes one PNG chunk: length, type, data, CRC of type and data.
func writeChunk(w io.Writer, typ string, data []byte) error {
	b := make([]byte, 0, 12+len(data))
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	b = append(b, typ...)
	b = append(b, data...)
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[4:]))
	_, err := w.Write(b)
	return err
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
						o := py*m.stride + px*3
						m.pix[o], m.pix[o+1], m.pix[o+2] = 255, 255, 255
					}
				}
			}
		}
		x += 4 * fontScale
	}
}
