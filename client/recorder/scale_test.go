//go:build cgo

package recorder

import (
	"math"
	"testing"

	"github.com/khadga/khadga/client/recorder/yuv"
)

// pattern makes a smooth, busy test picture: gradients plus a few edges.
func pattern(w, h int) []byte {
	rgb := make([]byte, w*h*3)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			p := rgb[(y*w+x)*3:]
			p[0] = uint8(x * 255 / max(1, w-1))
			p[1] = uint8(y * 255 / max(1, h-1))
			p[2] = uint8(128 + 100*math.Sin(float64(x+y)/17))
			if (x/40+y/40)%2 == 0 {
				p[2] /= 2
			}
		}
	}
	return rgb
}

// refScale is an independent float reference: convert every source pixel to
// RGB first, then average each output pixel's exact footprint.
func refScale(img *I420, dst Size, fit Fit) []byte {
	w, h := img.Width, img.Height
	rgb := make([]float64, w*h*3)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			Y := float64(img.Y[y*img.YStride+x]) - 16
			U := float64(img.U[(y/2)*img.UStride+x/2]) - 128
			V := float64(img.V[(y/2)*img.VStride+x/2]) - 128
			p := rgb[(y*w+x)*3:]
			p[0] = 1.164*Y + 1.596*V
			p[1] = 1.164*Y - 0.391*U - 0.813*V
			p[2] = 1.164*Y + 2.018*U
		}
	}
	out := make([]byte, dst.W*dst.H*3)
	s, _ := NewScaler(Size{w, h}, dst, fit)
	sx, sy, sw, sh := 0.0, 0.0, float64(w), float64(h)
	if fit == FitCrop {
		if float64(w)/float64(h) > float64(dst.W)/float64(dst.H) {
			sw = float64(h) * float64(dst.W) / float64(dst.H)
			sx = (float64(w) - sw) / 2
		} else {
			sh = float64(w) * float64(dst.H) / float64(dst.W)
			sy = (float64(h) - sh) / 2
		}
	}
	for oy := 0; oy < s.rh; oy++ {
		for ox := 0; ox < s.rw; ox++ {
			x0, x1 := sx+float64(ox)*sw/float64(s.rw), sx+float64(ox+1)*sw/float64(s.rw)
			y0, y1 := sy+float64(oy)*sh/float64(s.rh), sy+float64(oy+1)*sh/float64(s.rh)
			var acc [3]float64
			var area float64
			for y := int(y0); float64(y) < y1 && y < h; y++ {
				for x := int(x0); float64(x) < x1 && x < w; x++ {
					a := (math.Min(x1, float64(x+1)) - math.Max(x0, float64(x))) *
						(math.Min(y1, float64(y+1)) - math.Max(y0, float64(y)))
					for c := 0; c < 3; c++ {
						acc[c] += a * rgb[(y*w+x)*3+c]
					}
					area += a
				}
			}
			for c := 0; c < 3; c++ {
				out[((s.ry+oy)*dst.W+s.rx+ox)*3+c] = uint8(math.Round(math.Min(math.Max(acc[c]/area, 0), 255)))
			}
		}
	}
	return out
}

func psnr(a, b []byte) float64 {
	var se float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		se += d * d
	}
	if se == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(255*255/(se/float64(len(a))))
}

func TestScalerMatchesReference(t *testing.T) {
	cases := []struct {
		src, dst Size
		fit      Fit
		minPSNR  float64
	}{
		{Size{640, 480}, Size{224, 224}, FitCrop, 32},
		{Size{640, 480}, Size{224, 224}, FitPad, 32},
		{Size{640, 480}, Size{224, 224}, FitStretch, 32},
		{Size{320, 240}, Size{224, 224}, FitCrop, 32},    // mixed: down in x, up in y
		{Size{160, 120}, Size{224, 168}, FitStretch, 32}, // upscale
		// Odd output sides at 3.5:1: chroma is resized to the full output
		// size (I444), so colour edges stay close to the reference.
		{Size{225, 301}, Size{63, 97}, FitPad, 32},
		{Size{226, 302}, Size{63, 97}, FitPad, 32},
		{Size{225, 301}, Size{63, 97}, FitStretch, 32},
		// Even output sides at 3.5:1: half-resolution chroma blurs the
		// pattern's colour edges over twice the reference's footprint.
		{Size{225, 301}, Size{64, 96}, FitPad, 29},
	}
	for _, c := range cases {
		t.Run(c.src.String()+"_"+c.dst.String()+"_"+c.fit.String(), func(t *testing.T) {
			img := RGBToI420(pattern(c.src.W, c.src.H), c.src.W, c.src.H)
			s, err := NewScaler(c.src, c.dst, c.fit)
			if err != nil {
				t.Fatal(err)
			}
			out := make([]byte, s.FrameBytes())
			if err := s.Convert(out, img); err != nil {
				t.Fatal(err)
			}
			ref := refScale(img, c.dst, c.fit)
			// Chroma is resampled at half resolution, so edges in colour
			// differ a little from the full-resolution reference.
			p := psnr(out, ref)
			if p < c.minPSNR {
				t.Errorf("PSNR against reference %.1f dB, want >= %.0f", p, c.minPSNR)
			}
			t.Logf("PSNR against reference %.1f dB", p)
		})
	}
}

func TestScalerIdentityAndFlat(t *testing.T) {
	const w, h = 64, 48
	rgb := pattern(w, h)
	img := RGBToI420(rgb, w, h)
	s, _ := NewScaler(Size{w, h}, Size{w, h}, FitCrop)
	out := make([]byte, s.FrameBytes())
	if err := s.Convert(out, img); err != nil {
		t.Fatal(err)
	}
	// Same size: every sample passes through unchanged, so the output is
	// the plain conversion of the picture.
	conv := make([]byte, w*h*3)
	cw, ch := (w+1)/2, (h+1)/2
	if err := yuv.I420ToRGB(conv, w*3, yuv.Plane{Pix: img.Y, Stride: img.YStride, W: w, H: h},
		yuv.Plane{Pix: img.U, Stride: img.UStride, W: cw, H: ch}, yuv.Plane{Pix: img.V, Stride: img.VStride, W: cw, H: ch}); err != nil {
		t.Fatal(err)
	}
	for i := range conv {
		if conv[i] != out[i] {
			t.Fatalf("pixel (%d,%d) channel %d: %d, want %d", i/3%w, i/3/w, i%3, out[i], conv[i])
		}
	}
	// A flat picture stays exactly flat at any scale.
	flat := NewI420(333, 211)
	for i := range flat.Y {
		flat.Y[i] = 150
	}
	for i := range flat.U {
		flat.U[i], flat.V[i] = 90, 170
	}
	s2, _ := NewScaler(Size{333, 211}, Size{50, 70}, FitStretch)
	out2 := make([]byte, s2.FrameBytes())
	if err := s2.Convert(out2, flat); err != nil {
		t.Fatal(err)
	}
	for i := 3; i < len(out2); i++ {
		if out2[i] != out2[i%3] {
			t.Fatalf("flat picture not flat at byte %d: %d vs %d", i, out2[i], out2[i%3])
		}
	}
}

func TestScalerPadGeometry(t *testing.T) {
	src := NewI420(640, 480)
	for i := range src.Y {
		src.Y[i] = 235 // white
	}
	for i := range src.U {
		src.U[i], src.V[i] = 128, 128
	}
	s, _ := NewScaler(Size{640, 480}, Size{224, 224}, FitPad)
	out := make([]byte, s.FrameBytes())
	if err := s.Convert(out, src); err != nil {
		t.Fatal(err)
	}
	// 640x480 fits 224x168, centred: 28 black rows above and below.
	for y := 0; y < 224; y++ {
		want := uint8(255)
		if y < 28 || y >= 196 {
			want = 0
		}
		if got := out[(y*224+100)*3]; got != want {
			t.Fatalf("row %d: %d, want %d", y, got, want)
		}
	}
}

func TestScalerRejectsBadInput(t *testing.T) {
	s, _ := NewScaler(Size{64, 48}, Size{32, 32}, FitCrop)
	out := make([]byte, s.FrameBytes())
	img := NewI420(64, 48)
	img.Y = img.Y[:100]
	if err := s.Convert(out, img); err == nil {
		t.Error("short luma plane accepted")
	}
	if err := s.Convert(out, NewI420(65, 48)); err == nil {
		t.Error("wrong source size accepted")
	}
	if _, err := NewScaler(Size{0, 48}, Size{32, 32}, FitCrop); err == nil {
		t.Error("zero source size accepted")
	}
}

func BenchmarkScale640x480To224Crop(b *testing.B) {
	img := RGBToI420(pattern(640, 480), 640, 480)
	s, _ := NewScaler(Size{640, 480}, Size{224, 224}, FitCrop)
	out := make([]byte, s.FrameBytes())
	b.ReportAllocs()
	ct := startCPU(b)
	for b.Loop() {
		if err := s.Convert(out, img); err != nil {
			b.Fatal(err)
		}
	}
	ct.report(b, 1)
}

// TestScalerAnySize converts flat pictures between awkward sizes, tiny,
// odd and lopsided, with every fit: no panic, and flat stays flat.
func TestScalerAnySize(t *testing.T) {
	for _, sw := range []int{1, 2, 3, 15, 16, 17, 33, 640} {
		for _, sh := range []int{1, 2, 3, 4, 5, 480} {
			img := NewI420(sw, sh)
			for i := range img.Y {
				img.Y[i] = 120
			}
			for i := range img.U {
				img.U[i], img.V[i] = 100, 160
			}
			for _, dst := range []Size{{1, 1}, {3, 2}, {224, 224}, {63, 97}} {
				for _, fit := range []Fit{FitCrop, FitPad, FitStretch} {
					s, err := NewScaler(Size{sw, sh}, dst, fit)
					if err != nil {
						t.Fatal(err)
					}
					out := make([]byte, s.FrameBytes())
					if err := s.Convert(out, img); err != nil {
						t.Fatalf("%dx%d to %v %v: %v", sw, sh, dst, fit, err)
					}
					c := ((s.ry+s.rh/2)*dst.W + s.rx + s.rw/2) * 3 // a pixel inside the picture
					for y := s.ry; y < s.ry+s.rh; y++ {
						for x := s.rx; x < s.rx+s.rw; x++ {
							if o := (y*dst.W + x) * 3; string(out[o:o+3]) != string(out[c:c+3]) {
								t.Fatalf("%dx%d to %v %v: (%d,%d) is %v, centre %v", sw, sh, dst, fit, x, y, out[o:o+3], out[c:c+3])
							}
						}
					}
				}
			}
		}
	}
}
