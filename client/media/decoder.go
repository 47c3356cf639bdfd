package media

import (
	"image"
	"sync"

	"github.com/khadga/khadga/client/media/vpx"
)

// Decoder decodes VP8 or VP9 frames into fresh pictures. It is safe for
// concurrent use, though frames must arrive in order.
type Decoder struct {
	mu  sync.Mutex
	dec *vpx.Decoder
}

// NewDecoder makes a decoder for codec: "video/VP8", "VP8", "video/VP9" or
// "VP9" (any case). Without cgo it returns vpx.ErrNoLibvpx.
func NewDecoder(codec string) (*Decoder, error) {
	d, err := vpx.NewDecoder(codec)
	if err != nil {
		return nil, err
	}
	return &Decoder{dec: d}, nil
}

// Decode decodes one compressed frame. It returns the picture as a fresh
// 4:2:0 image, or a nil image and nil error when the frame produced no
// picture. Corrupt input is an error, never a crash (vpx.Decoder's limits
// apply).
func (d *Decoder) Decode(frame []byte) (*image.YCbCr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	img, err := d.dec.Decode(frame)
	if err != nil || img == nil {
		return nil, err
	}
	return copyImage(img), nil
}

// copyImage copies a decoded picture out of the decoder's memory.
func copyImage(img *vpx.Image) *image.YCbCr {
	w, h := img.Width, img.Height
	out := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	copyPlane(out.Y, out.YStride, img.Y, img.YStride, w, h)
	cw, ch := (w+1)/2, (h+1)/2
	copyPlane(out.Cb, out.CStride, img.U, img.UStride, cw, ch)
	copyPlane(out.Cr, out.CStride, img.V, img.VStride, cw, ch)
	return out
}

func copyPlane(dst []byte, dstStride int, src []byte, srcStride, w, h int) {
	for y := 0; y < h; y++ {
		copy(dst[y*dstStride:y*dstStride+w], src[y*srcStride:y*srcStride+w])
	}
}

// Close frees the decoder.
func (d *Decoder) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dec.Close()
}
