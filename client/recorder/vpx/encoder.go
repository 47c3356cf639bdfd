//go:build cgo

package vpx

/*
#cgo pkg-config: vpx
#include <stdlib.h>
#include <string.h>
#include <vpx/vpx_encoder.h>
#include <vpx/vp8cx.h>

static vpx_codec_err_t khadga_enc_init(vpx_codec_ctx_t *ctx, int vp9, unsigned int w, unsigned int h,
		unsigned int fps, unsigned int kbps) {
	vpx_codec_iface_t *iface = vp9 ? vpx_codec_vp9_cx() : vpx_codec_vp8_cx();
	vpx_codec_enc_cfg_t cfg;
	vpx_codec_err_t err = vpx_codec_enc_config_default(iface, &cfg, 0);
	if (err != VPX_CODEC_OK) return err;
	cfg.g_w = w;
	cfg.g_h = h;
	cfg.g_timebase.num = 1;
	cfg.g_timebase.den = fps;
	cfg.rc_target_bitrate = kbps;
	cfg.rc_end_usage = VPX_CBR;
	cfg.g_lag_in_frames = 0;
	cfg.g_threads = 1;
	cfg.g_error_resilient = 1;
	cfg.kf_mode = VPX_KF_AUTO;
	cfg.kf_max_dist = 100000; // key frames on request (PLI), not on a schedule
	err = vpx_codec_enc_init(ctx, iface, &cfg, 0);
	if (err != VPX_CODEC_OK) return err;
	vpx_codec_control(ctx, VP8E_SET_CPUUSED, vp9 ? 8 : 16);
	return VPX_CODEC_OK;
}

static vpx_codec_err_t khadga_encode(vpx_codec_ctx_t *ctx, vpx_image_t *img, long pts, int key) {
	return vpx_codec_encode(ctx, img, pts, 1, key ? VPX_EFLAG_FORCE_KF : 0, VPX_DL_REALTIME);
}

// khadga_next copies the next compressed frame into buf (cap bytes) and
// returns its size, 0 when there is none, or -size when buf is too small.
static long khadga_next(vpx_codec_ctx_t *ctx, vpx_codec_iter_t *it, uint8_t *buf, long cap) {
	const vpx_codec_cx_pkt_t *p;
	while ((p = vpx_codec_get_cx_data(ctx, it)) != NULL) {
		if (p->kind != VPX_CODEC_CX_FRAME_PKT) continue;
		long n = (long)p->data.frame.sz;
		if (n > cap) return -n;
		memcpy(buf, p->data.frame.buf, n);
		return n;
	}
	return 0;
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Encoder encodes I420 pictures to VP8 or VP9 in real-time mode. khadga's
// recorder tests and benchmarks use it to make streams of known pictures.
// It is not safe for concurrent use.
type Encoder struct {
	ctx   *C.vpx_codec_ctx_t
	img   *C.vpx_image_t
	w, h  int
	pts   int64
	buf   []byte
	codec string
}

// NewEncoder makes an encoder of w×h pictures at fps frames per second and
// a target bitrate in kbit/s.
func NewEncoder(codec string, w, h, fps, kbps int) (*Encoder, error) {
	vp9 := 0
	switch codec {
	case VP8:
	case VP9:
		vp9 = 1
	default:
		return nil, fmt.Errorf("%w: %q", ErrCodec, codec)
	}
	if w < 2 || h < 2 || w > 4096 || h > 4096 || fps < 1 || kbps < 1 {
		return nil, fmt.Errorf("vpx: encoder %dx%d at %d fps, %d kbit/s: out of range", w, h, fps, kbps)
	}
	ctx := (*C.vpx_codec_ctx_t)(C.calloc(1, C.size_t(unsafe.Sizeof(C.vpx_codec_ctx_t{}))))
	if err := C.khadga_enc_init(ctx, C.int(vp9), C.uint(w), C.uint(h), C.uint(fps), C.uint(kbps)); err != C.VPX_CODEC_OK {
		C.free(unsafe.Pointer(ctx))
		return nil, fmt.Errorf("vpx: init %s encoder: %s", codec, C.GoString(C.vpx_codec_err_to_string(err)))
	}
	img := C.vpx_img_alloc(nil, C.VPX_IMG_FMT_I420, C.uint(w), C.uint(h), 1)
	if img == nil {
		C.vpx_codec_destroy(ctx)
		C.free(unsafe.Pointer(ctx))
		return nil, fmt.Errorf("vpx: allocate %dx%d picture", w, h)
	}
	return &Encoder{ctx: ctx, img: img, w: w, h: h, codec: codec, buf: make([]byte, w*h*3/2+4096)}, nil
}

// Encode encodes one picture, given as tightly packed I420 planes, and
// returns the compressed frame (nil if the encoder dropped it). key forces a
// key frame. The result is valid until the next call.
func (e *Encoder) Encode(y, u, v []byte, key bool) ([]byte, error) {
	if e.ctx == nil {
		return nil, fmt.Errorf("vpx: encoder closed")
	}
	cw, ch := (e.w+1)/2, (e.h+1)/2
	if len(y) < e.w*e.h || len(u) < cw*ch || len(v) < cw*ch {
		return nil, fmt.Errorf("vpx: planes too small for %dx%d", e.w, e.h)
	}
	copyPlane(e.img.planes[0], int(e.img.stride[0]), y, e.w, e.h)
	copyPlane(e.img.planes[1], int(e.img.stride[1]), u, cw, ch)
	copyPlane(e.img.planes[2], int(e.img.stride[2]), v, cw, ch)
	k := 0
	if key {
		k = 1
	}
	if err := C.khadga_encode(e.ctx, e.img, C.long(e.pts), C.int(k)); err != C.VPX_CODEC_OK {
		return nil, fmt.Errorf("vpx: encode: %s", C.GoString(C.vpx_codec_err_to_string(err)))
	}
	e.pts++
	var it C.vpx_codec_iter_t
	var out []byte
	for {
		n := int(C.khadga_next(e.ctx, &it, (*C.uint8_t)(unsafe.Pointer(&e.buf[0])), C.long(len(e.buf))))
		if n < 0 {
			return nil, fmt.Errorf("vpx: encoded frame of %d bytes over the %d byte buffer", -n, len(e.buf))
		}
		if n == 0 {
			return out, nil
		}
		out = e.buf[:n] // one frame per picture in real-time mode without lag
	}
}

func copyPlane(dst *C.uchar, stride int, src []byte, w, h int) {
	d := unsafe.Slice((*byte)(unsafe.Pointer(dst)), (h-1)*stride+w)
	for r := 0; r < h; r++ {
		copy(d[r*stride:r*stride+w], src[r*w:(r+1)*w])
	}
}

// Close frees the encoder.
func (e *Encoder) Close() error {
	if e.ctx != nil {
		C.vpx_codec_destroy(e.ctx)
		C.free(unsafe.Pointer(e.ctx))
		C.vpx_img_free(e.img)
		e.ctx, e.img = nil, nil
	}
	return nil
}
