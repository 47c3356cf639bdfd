//go:build cgo

package vpx

/*
#cgo pkg-config: vpx
#include <stdlib.h>
#include <string.h>
#include <vpx/vpx_encoder.h>
#include <vpx/vp8cx.h>

static vpx_codec_err_t khadga_enc_init(vpx_codec_ctx_t *ctx, int vp9, unsigned int w, unsigned int h,
		unsigned int fps, unsigned int kbps, unsigned int kf, int speed) {
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
	cfg.g_error_resilient = VPX_ERROR_RESILIENT_DEFAULT;
	cfg.kf_mode = VPX_KF_AUTO;
	cfg.kf_max_dist = kf;
	err = vpx_codec_enc_init(ctx, iface, &cfg, 0);
	if (err != VPX_CODEC_OK) return err;
	vpx_codec_control(ctx, VP8E_SET_CPUUSED, speed);
	return VPX_CODEC_OK;
}

// khadga_encode encodes one I420 picture whose planes live in Go memory,
// used only during the call (with no lag, libvpx copies the picture before
// it returns), and copies the compressed frame to out.
static vpx_codec_err_t khadga_encode(vpx_codec_ctx_t *ctx, int w, int h,
		unsigned char *y, unsigned char *u, unsigned char *v, int ys, int us, int vs,
		long long pts, int force_kf, unsigned char *out, long cap, long *len, int *key) {
	vpx_image_t img;
	if (!vpx_img_wrap(&img, VPX_IMG_FMT_I420, w, h, 1, y)) return VPX_CODEC_ERROR;
	img.planes[VPX_PLANE_Y] = y;
	img.planes[VPX_PLANE_U] = u;
	img.planes[VPX_PLANE_V] = v;
	img.stride[VPX_PLANE_Y] = ys;
	img.stride[VPX_PLANE_U] = us;
	img.stride[VPX_PLANE_V] = vs;
	vpx_codec_err_t err = vpx_codec_encode(ctx, &img, pts, 1, force_kf ? VPX_EFLAG_FORCE_KF : 0, VPX_DL_REALTIME);
	if (err != VPX_CODEC_OK) return err;
	*len = 0;
	*key = 0;
	vpx_codec_iter_t iter = NULL;
	const vpx_codec_cx_pkt_t *pkt;
	while ((pkt = vpx_codec_get_cx_data(ctx, &iter)) != NULL) {
		if (pkt->kind != VPX_CODEC_CX_FRAME_PKT) continue;
		if (*len + (long)pkt->data.frame.sz > cap) return VPX_CODEC_MEM_ERROR;
		memcpy(out + *len, pkt->data.frame.buf, pkt->data.frame.sz);
		*len += pkt->data.frame.sz;
		if (pkt->data.frame.flags & VPX_FRAME_IS_KEY) *key = 1;
	}
	return VPX_CODEC_OK;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// Encoder encodes I420 pictures to VP8 or VP9 in real-time mode. It is not
// safe for concurrent use.
type Encoder struct {
	cfg EncoderConfig
	ctx *C.vpx_codec_ctx_t
	pts int64
	out []byte
}

// NewEncoder makes an encoder.
func NewEncoder(cfg EncoderConfig) (*Encoder, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	vp9 := 0
	if cfg.Codec == VP9 {
		vp9 = 1
	}
	ctx := (*C.vpx_codec_ctx_t)(C.calloc(1, C.size_t(unsafe.Sizeof(C.vpx_codec_ctx_t{}))))
	if ctx == nil {
		return nil, errors.New("vpx: out of memory")
	}
	if err := C.khadga_enc_init(ctx, C.int(vp9), C.uint(cfg.Width), C.uint(cfg.Height), C.uint(cfg.FPS),
		C.uint(cfg.BitrateKbps), C.uint(cfg.KeyframeInterval), C.int(cfg.Speed)); err != C.VPX_CODEC_OK {
		C.free(unsafe.Pointer(ctx))
		return nil, fmt.Errorf("vpx: init %s encoder: %s", cfg.Codec, C.GoString(C.vpx_codec_err_to_string(err)))
	}
	// Room for a key frame at the worst quality: an uncompressed picture.
	return &Encoder{cfg: cfg, ctx: ctx, out: make([]byte, cfg.Width*cfg.Height*3/2+4096)}, nil
}

// Encode encodes one picture of the configured size; key forces a key
// frame. It returns the compressed frame, valid until the next call (nil
// when the encoder dropped the picture), and whether it is a key frame.
func (e *Encoder) Encode(img *Image, key bool) ([]byte, bool, error) {
	if e.ctx == nil {
		return nil, false, errors.New("vpx: encoder closed")
	}
	if img.Width != e.cfg.Width || img.Height != e.cfg.Height {
		return nil, false, fmt.Errorf("vpx: picture of %dx%d, the encoder wants %dx%d", img.Width, img.Height, e.cfg.Width, e.cfg.Height)
	}
	if err := img.check(); err != nil {
		return nil, false, err
	}
	force := C.int(0)
	if key {
		force = 1
	}
	var n C.long
	var isKey C.int
	// The planes are Go memory without pointers, read only during the call.
	code := C.khadga_encode(e.ctx, C.int(img.Width), C.int(img.Height),
		(*C.uchar)(unsafe.Pointer(&img.Y[0])), (*C.uchar)(unsafe.Pointer(&img.U[0])), (*C.uchar)(unsafe.Pointer(&img.V[0])),
		C.int(img.YStride), C.int(img.UStride), C.int(img.VStride), C.longlong(e.pts), force,
		(*C.uchar)(unsafe.Pointer(&e.out[0])), C.long(len(e.out)), &n, &isKey)
	if code != C.VPX_CODEC_OK {
		return nil, false, fmt.Errorf("vpx: encode %s: %s", e.cfg.Codec, C.GoString(C.vpx_codec_err_to_string(code)))
	}
	e.pts++
	if n == 0 {
		return nil, false, nil
	}
	return e.out[:n], isKey != 0, nil
}

// Close frees the encoder.
func (e *Encoder) Close() error {
	if e.ctx != nil {
		C.vpx_codec_destroy(e.ctx)
		C.free(unsafe.Pointer(e.ctx))
		e.ctx = nil
	}
	return nil
}
