//go:build cgo

package vpx

/*
#cgo pkg-config: vpx
#include <stdlib.h>
#include <string.h>
#include <vpx/vpx_decoder.h>
#include <vpx/vp8dx.h>

static vpx_codec_err_t khadga_dec_init(vpx_codec_ctx_t *ctx, int vp9, unsigned int threads) {
	vpx_codec_dec_cfg_t cfg;
	memset(&cfg, 0, sizeof cfg);
	cfg.threads = threads;
	return vpx_codec_dec_init(ctx, vp9 ? vpx_codec_vp9_dx() : vpx_codec_vp8_dx(), &cfg, 0);
}

// khadga_decode decodes one frame and returns the last picture it yields,
// or NULL.
static vpx_image_t *khadga_decode(vpx_codec_ctx_t *ctx, const uint8_t *data, unsigned int n, vpx_codec_err_t *err) {
	*err = vpx_codec_decode(ctx, data, n, NULL, 0);
	if (*err != VPX_CODEC_OK) return NULL;
	vpx_codec_iter_t it = NULL;
	vpx_image_t *img, *last = NULL;
	while ((img = vpx_codec_get_frame(ctx, &it)) != NULL) last = img;
	return last;
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Decoder decodes one VP8 or VP9 stream, in order. It is not safe for
// concurrent use.
type Decoder struct {
	ctx   *C.vpx_codec_ctx_t
	codec string
	buf   []byte // a VP9 frame with the superframe index it was given
}

// Codecs lists the codecs this build decodes.
func Codecs() []string { return []string{VP8, VP9} }

// NewDecoder makes a single-threaded decoder for codec: VP8 or VP9, as a
// MIME type ("video/VP8") or a bare name ("vp8"), in any case.
func NewDecoder(codec string) (*Decoder, error) {
	codec, err := canonical(codec)
	if err != nil {
		return nil, err
	}
	vp9 := 0
	if codec == VP9 {
		vp9 = 1
	}
	ctx := (*C.vpx_codec_ctx_t)(C.calloc(1, C.size_t(unsafe.Sizeof(C.vpx_codec_ctx_t{}))))
	if err := C.khadga_dec_init(ctx, C.int(vp9), 1); err != C.VPX_CODEC_OK {
		C.free(unsafe.Pointer(ctx))
		return nil, fmt.Errorf("vpx: init %s decoder: %s", codec, C.GoString(C.vpx_codec_err_to_string(err)))
	}
	return &Decoder{ctx: ctx, codec: codec}, nil
}

// Codec is the decoder's codec, VP8 or VP9.
func (d *Decoder) Codec() string { return d.codec }

// Decode decodes one frame. It returns nil and no error when the frame
// yields no picture (a hidden frame). The picture is valid until the next
// call.
func (d *Decoder) Decode(frame []byte) (*Image, error) {
	if d.ctx == nil {
		return nil, fmt.Errorf("vpx: decoder closed")
	}
	if len(frame) == 0 || len(frame) > MaxFrameBytes {
		return nil, fmt.Errorf("vpx: frame of %d bytes", len(frame))
	}
	// Every size libvpx will read is checked first (header.go).
	if d.codec == VP8 {
		if err := checkVP8(frame); err != nil {
			return nil, err
		}
	} else {
		indexed, err := checkVP9(frame)
		if err != nil {
			return nil, err
		}
		if !indexed {
			d.buf = vp9Index(append(d.buf[:0], frame...), len(frame))
			frame = d.buf
		}
	}
	var cerr C.vpx_codec_err_t
	// The frame is Go memory without pointers, read only during the call.
	img := C.khadga_decode(d.ctx, (*C.uint8_t)(unsafe.Pointer(&frame[0])), C.uint(len(frame)), &cerr)
	if cerr != C.VPX_CODEC_OK {
		detail := C.vpx_codec_error_detail(d.ctx)
		msg := C.GoString(C.vpx_codec_err_to_string(cerr))
		if detail != nil {
			msg += ": " + C.GoString(detail)
		}
		return nil, fmt.Errorf("vpx: decode %s: %s", d.codec, msg)
	}
	if img == nil {
		return nil, nil
	}
	if img.fmt != C.VPX_IMG_FMT_I420 {
		return nil, fmt.Errorf("vpx: decoded picture format %d, want I420", int(img.fmt))
	}
	w, h := int(img.d_w), int(img.d_h)
	cw, ch := (w+1)/2, (h+1)/2
	ys, us, vs := int(img.stride[0]), int(img.stride[1]), int(img.stride[2])
	return &Image{
		Width: w, Height: h,
		Y:       unsafe.Slice((*byte)(unsafe.Pointer(img.planes[0])), (h-1)*ys+w),
		U:       unsafe.Slice((*byte)(unsafe.Pointer(img.planes[1])), (ch-1)*us+cw),
		V:       unsafe.Slice((*byte)(unsafe.Pointer(img.planes[2])), (ch-1)*vs+cw),
		YStride: ys, UStride: us, VStride: vs,
	}, nil
}

// Close frees the decoder.
func (d *Decoder) Close() error {
	if d.ctx != nil {
		C.vpx_codec_destroy(d.ctx)
		C.free(unsafe.Pointer(d.ctx))
		d.ctx = nil
	}
	return nil
}
