//go:build cgo

package media

/*
#cgo pkg-config: vpx
#include <stdlib.h>
#include <string.h>
#include <vpx/vpx_encoder.h>
#include <vpx/vpx_decoder.h>
#include <vpx/vp8cx.h>
#include <vpx/vp8dx.h>

static vpx_codec_ctx_t *khadga_enc_new(int w, int h, int fps, int kbps, int kf, int *err) {
	vpx_codec_enc_cfg_t cfg;
	*err = vpx_codec_enc_config_default(vpx_codec_vp8_cx(), &cfg, 0);
	if (*err) return NULL;
	cfg.g_w = w;
	cfg.g_h = h;
	cfg.g_timebase.num = 1;
	cfg.g_timebase.den = fps;
	cfg.rc_target_bitrate = kbps;
	cfg.rc_end_usage = VPX_CBR;
	cfg.g_lag_in_frames = 0;
	cfg.g_error_resilient = VPX_ERROR_RESILIENT_DEFAULT;
	cfg.kf_mode = VPX_KF_AUTO;
	cfg.kf_max_dist = kf;
	cfg.g_threads = 1;
	vpx_codec_ctx_t *ctx = calloc(1, sizeof(vpx_codec_ctx_t));
	if (!ctx) { *err = VPX_CODEC_MEM_ERROR; return NULL; }
	*err = vpx_codec_enc_init(ctx, vpx_codec_vp8_cx(), &cfg, 0);
	if (*err) { free(ctx); return NULL; }
	vpx_codec_control(ctx, VP8E_SET_CPUUSED, 8);
	return ctx;
}

// khadga_enc_frame encodes one I420 frame and copies the output to out.
// The Go planes are used only during the call.
static int khadga_enc_frame(vpx_codec_ctx_t *ctx, int w, int h,
		unsigned char *y, unsigned char *u, unsigned char *v, int ys, int cs,
		long long pts, int force_kf, unsigned char *out, int cap, int *len, int *key) {
	vpx_image_t img;
	if (!vpx_img_wrap(&img, VPX_IMG_FMT_I420, w, h, 1, y)) return VPX_CODEC_ERROR;
	img.planes[VPX_PLANE_Y] = y;
	img.planes[VPX_PLANE_U] = u;
	img.planes[VPX_PLANE_V] = v;
	img.stride[VPX_PLANE_Y] = ys;
	img.stride[VPX_PLANE_U] = cs;
	img.stride[VPX_PLANE_V] = cs;
	int err = vpx_codec_encode(ctx, &img, pts, 1, force_kf ? VPX_EFLAG_FORCE_KF : 0, VPX_DL_REALTIME);
	if (err) return err;
	*len = 0;
	*key = 0;
	vpx_codec_iter_t iter = NULL;
	const vpx_codec_cx_pkt_t *pkt;
	while ((pkt = vpx_codec_get_cx_data(ctx, &iter)) != NULL) {
		if (pkt->kind != VPX_CODEC_CX_FRAME_PKT) continue;
		if (*len + (int)pkt->data.frame.sz > cap) return VPX_CODEC_MEM_ERROR;
		memcpy(out + *len, pkt->data.frame.buf, pkt->data.frame.sz);
		*len += pkt->data.frame.sz;
		if (pkt->data.frame.flags & VPX_FRAME_IS_KEY) *key = 1;
	}
	return 0;
}

static vpx_codec_ctx_t *khadga_dec_new(int vp9, int *err) {
	vpx_codec_ctx_t *ctx = calloc(1, sizeof(vpx_codec_ctx_t));
	if (!ctx) { *err = VPX_CODEC_MEM_ERROR; return NULL; }
	vpx_codec_dec_cfg_t cfg = {0};
	cfg.threads = 1;
	*err = vpx_codec_dec_init(ctx, vp9 ? vpx_codec_vp9_dx() : vpx_codec_vp8_dx(), &cfg, 0);
	if (*err) { free(ctx); return NULL; }
	return ctx;
}

static void khadga_free(vpx_codec_ctx_t *ctx) {
	vpx_codec_destroy(ctx);
	free(ctx);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"image"
	"strings"
	"sync"
	"unsafe"
)

func vpxError(what string, code C.int) error {
	return fmt.Errorf("media: %s: %s", what, C.GoString(C.vpx_codec_err_to_string(C.vpx_codec_err_t(code))))
}

// Encoder is a VP8 encoder for real-time use (no lag, CBR, error
// resilient). It is not safe for concurrent use.
type Encoder struct {
	cfg EncoderConfig
	ctx *C.vpx_codec_ctx_t
	pts int64
	out []byte
}

// NewEncoder makes a VP8 encoder.
func NewEncoder(cfg EncoderConfig) (*Encoder, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	var code C.int
	ctx := C.khadga_enc_new(C.int(cfg.Width), C.int(cfg.Height), C.int(cfg.FPS), C.int(cfg.BitrateKbps), C.int(cfg.KeyframeInterval), &code)
	if ctx == nil {
		return nil, vpxError("vp8 encoder init", code)
	}
	// Room for a key frame at the worst quality: an uncompressed frame.
	return &Encoder{cfg: cfg, ctx: ctx, out: make([]byte, cfg.Width*cfg.Height*3/2+4096)}, nil
}

// Encode encodes one 4:2:0 frame of the configured size and returns the
// VP8 frame (a fresh slice) and whether it is a key frame.
func (e *Encoder) Encode(img *image.YCbCr, forceKeyframe bool) ([]byte, bool, error) {
	if e.ctx == nil {
		return nil, false, errors.New("media: encoder closed")
	}
	b := img.Bounds()
	if b.Dx() != e.cfg.Width || b.Dy() != e.cfg.Height || img.SubsampleRatio != image.YCbCrSubsampleRatio420 {
		return nil, false, fmt.Errorf("media: frame is %dx%d %v, encoder wants %dx%d 4:2:0", b.Dx(), b.Dy(), img.SubsampleRatio, e.cfg.Width, e.cfg.Height)
	}
	var n, key C.int
	force := C.int(0)
	if forceKeyframe {
		force = 1
	}
	code := C.khadga_enc_frame(e.ctx, C.int(e.cfg.Width), C.int(e.cfg.Height),
		(*C.uchar)(unsafe.Pointer(&img.Y[0])), (*C.uchar)(unsafe.Pointer(&img.Cb[0])), (*C.uchar)(unsafe.Pointer(&img.Cr[0])),
		C.int(img.YStride), C.int(img.CStride), C.longlong(e.pts), force,
		(*C.uchar)(unsafe.Pointer(&e.out[0])), C.int(len(e.out)), &n, &key)
	if code != 0 {
		return nil, false, vpxError("vp8 encode", code)
	}
	e.pts++
	return append([]byte(nil), e.out[:n]...), key != 0, nil
}

// Close frees the encoder.
func (e *Encoder) Close() error {
	if e.ctx != nil {
		C.khadga_free(e.ctx)
		e.ctx = nil
	}
	return nil
}

// Decoder decodes VP8 or VP9 frames. It is safe for concurrent use, though
// frames must arrive in order.
type Decoder struct {
	mu  sync.Mutex
	ctx *C.vpx_codec_ctx_t
	vp8 bool
}

// maxFrame caps one compressed frame handed to the decoder.
const maxFrame = 8 << 20

// NewDecoder makes a decoder for codec: "video/VP8", "VP8", "video/VP9" or
// "VP9" (any case).
func NewDecoder(codec string) (*Decoder, error) {
	var vp9 C.int
	switch strings.ToUpper(strings.TrimPrefix(strings.ToLower(codec), "video/")) {
	case "VP8":
	case "VP9":
		vp9 = 1
	default:
		return nil, fmt.Errorf("media: no decoder for codec %q", codec)
	}
	var code C.int
	ctx := C.khadga_dec_new(vp9, &code)
	if ctx == nil {
		return nil, vpxError("decoder init", code)
	}
	return &Decoder{ctx: ctx, vp8: vp9 == 0}, nil
}

// Decode decodes one compressed frame. It returns the picture as a fresh
// 4:2:0 image, or a nil image and nil error when the frame produced no
// picture. Corrupt input is an error, never a crash.
func (d *Decoder) Decode(frame []byte) (*image.YCbCr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ctx == nil {
		return nil, errors.New("media: decoder closed")
	}
	if len(frame) == 0 || len(frame) > maxFrame {
		return nil, fmt.Errorf("media: frame of %d bytes", len(frame))
	}
	if d.vp8 {
		if err := checkVP8Size(frame); err != nil {
			return nil, err
		}
	}
	buf := C.CBytes(frame)
	defer C.free(buf)
	if code := C.vpx_codec_decode(d.ctx, (*C.uint8_t)(buf), C.uint(len(frame)), nil, 0); code != 0 {
		return nil, vpxError("decode", C.int(code))
	}
	var iter C.vpx_codec_iter_t
	var out *image.YCbCr
	for {
		img := C.vpx_codec_get_frame(d.ctx, &iter)
		if img == nil {
			return out, nil
		}
		out = copyImage(img)
	}
}

// copyImage copies a libvpx I420 picture into Go memory.
func copyImage(img *C.vpx_image_t) *image.YCbCr {
	w, h := int(img.d_w), int(img.d_h)
	out := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	copyPlane(out.Y, out.YStride, img.planes[0], int(img.stride[0]), w, h)
	cw, ch := (w+1)/2, (h+1)/2
	copyPlane(out.Cb, out.CStride, img.planes[1], int(img.stride[1]), cw, ch)
	copyPlane(out.Cr, out.CStride, img.planes[2], int(img.stride[2]), cw, ch)
	return out
}

func copyPlane(dst []byte, dstStride int, src *C.uchar, srcStride, w, h int) {
	s := unsafe.Slice((*byte)(unsafe.Pointer(src)), srcStride*(h-1)+w)
	for y := 0; y < h; y++ {
		copy(dst[y*dstStride:y*dstStride+w], s[y*srcStride:y*srcStride+w])
	}
}

// Close frees the decoder.
func (d *Decoder) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ctx != nil {
		C.khadga_free(d.ctx)
		d.ctx = nil
	}
	return nil
}
