package recorder

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
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
	img := image.NewRGBA(image.Rect(0, 0, cols*cellW+gap, rows*cellH+gap))
	for i := range img.Pix {
		img.Pix[i] = 40 // dark grey background, opaque
		if i%4 == 3 {
			img.Pix[i] = 255
		}
	}
	for i, th := range s.thumbs {
		x0, y0 := gap+(i%cols)*cellW, gap+(i/cols)*cellH
		for y := 0; y < s.h; y++ {
			for x := 0; x < s.w; x++ {
				p := th[(y*s.w+x)*3:]
				o := img.PixOffset(x0+x, y0+y)
				img.Pix[o], img.Pix[o+1], img.Pix[o+2] = p[0], p[1], p[2]
			}
		}
		label := fmt.Sprintf("#%d +%.2fs", s.frames[i], float64(s.times[i])/1e6)
		drawText(img, x0+1, y0+s.h+2, label)
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("recorder: contact sheet: %w", err)
	}
	return buf.Bytes(), nil
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

// drawText draws s in white at (x, y), clipped to img; unknown runes are
// drawn as blanks.
func drawText(img *image.RGBA, x, y int, s string) {
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
						if !(image.Point{px, py}).In(img.Rect) {
							continue
						}
						o := img.PixOffset(px, py)
						img.Pix[o], img.Pix[o+1], img.Pix[o+2] = 255, 255, 255
					}
				}
			}
		}
		x += 4 * fontScale
	}
}
