package recorder

// RGBToI420 converts packed RGB (W×H×3) to a new I420 picture with the
// inverse of the recorder's conversion (BT.601, limited range), averaging
// chroma over 2×2 blocks. Tests and tools use it to make sources whose
// recorded output is known.
func RGBToI420(rgb []byte, w, h int) *I420 {
	img := NewI420(w, h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			p := rgb[(y*w+x)*3:]
			r, g, b := int32(p[0]), int32(p[1]), int32(p[2])
			img.Y[y*w+x] = uint8(min(max((66*r+129*g+25*b+128)>>8+16, 0), 255))
		}
	}
	for cy := 0; cy < (h+1)/2; cy++ {
		for cx := 0; cx < (w+1)/2; cx++ {
			var r, g, b, n int32
			for dy := 0; dy < 2; dy++ {
				for dx := 0; dx < 2; dx++ {
					x, y := 2*cx+dx, 2*cy+dy
					if x >= w || y >= h {
						continue
					}
					p := rgb[(y*w+x)*3:]
					r, g, b, n = r+int32(p[0]), g+int32(p[1]), b+int32(p[2]), n+1
				}
			}
			r, g, b = r/n, g/n, b/n
			img.U[cy*img.UStride+cx] = uint8(min(max((-38*r-74*g+112*b+128)>>8+128, 0), 255))
			img.V[cy*img.VStride+cx] = uint8(min(max((112*r-94*g-18*b+128)>>8+128, 0), 255))
		}
	}
	return img
}
