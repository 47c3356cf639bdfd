package recorder

// BT.601 limited-range YUV to RGB in 8.8 fixed point, by table:
//
//	R = 1.164(Y-16) + 1.596(V-128)
//	G = 1.164(Y-16) - 0.391(U-128) - 0.813(V-128)
//	B = 1.164(Y-16) + 2.018(U-128)
var (
	tabY, tabRV, tabGU, tabGV, tabBU [256]int32
	// tabClamp maps (x>>8)+clampBias, for any x the tables can sum to, to 0..255.
	tabClamp [1024]uint8
)

const clampBias = 384

func init() {
	for i := 0; i < 256; i++ {
		c := int32(i) - 128
		tabY[i] = 298*(int32(i)-16) + 128
		tabRV[i] = 409 * c
		tabGU[i] = -100 * c
		tabGV[i] = -208 * c
		tabBU[i] = 516 * c
	}
	for i := range tabClamp {
		tabClamp[i] = uint8(min(max(i-clampBias, 0), 255))
	}
}

// clamp8 maps a fixed-point sum to 0..255. The sums span about -570..+700
// after the shift, well inside the table; the mask only spares a bounds check.
func clamp8(x int32) uint8 { return tabClamp[((x>>8)+clampBias)&1023] }

// yuvRowToRGB converts one row of luma, with chroma at half horizontal
// resolution, to packed RGB. len(rgb) is 3*len(y).
func yuvRowToRGB(rgb, y, u, v []byte) {
	n := len(y)
	rgb = rgb[:3*n]
	u = u[:(n+1)/2]
	v = v[:(n+1)/2]
	for x := 0; x+1 < n; x += 2 {
		cu, cv := u[x/2], v[x/2]
		rv, gc, bu := tabRV[cv], tabGU[cu]+tabGV[cv], tabBU[cu]
		l := tabY[y[x]]
		o := rgb[3*x : 3*x+6]
		o[0], o[1], o[2] = clamp8(l+rv), clamp8(l+gc), clamp8(l+bu)
		l = tabY[y[x+1]]
		o[3], o[4], o[5] = clamp8(l+rv), clamp8(l+gc), clamp8(l+bu)
	}
	if n%2 == 1 {
		x := n - 1
		cu, cv := u[x/2], v[x/2]
		l := tabY[y[x]]
		o := rgb[3*x : 3*x+3]
		o[0], o[1], o[2] = clamp8(l+tabRV[cv]), clamp8(l+tabGU[cu]+tabGV[cv]), clamp8(l+tabBU[cu])
	}
}

// RGBToI420 converts packed RGB (W×H×3) to a new I420 picture with the
// inverse of the recorder's conversion, averaging chroma over 2×2 blocks.
// Tests and tools use it to make sources whose recorded output is known.
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
