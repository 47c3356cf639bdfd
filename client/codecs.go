package client

import (
	"fmt"
	"strings"

	"github.com/pion/webrtc/v4"
)

// videoCodecs are the video codecs WithVideoCodecs can choose from, with
// the payload types and parameters of pion's defaults, each with its RTX.
var videoCodecs = []struct {
	mime, fmtp string
	pt, rtx    webrtc.PayloadType
}{
	{webrtc.MimeTypeVP8, "", 96, 97},
	{webrtc.MimeTypeVP9, "profile-id=0", 98, 99},
	{webrtc.MimeTypeVP9, "profile-id=2", 100, 101},
}

// registerCodecs registers pion's default codecs, or, when video is not
// nil, Opus and only the listed video codecs: a peer that can decode only
// some codecs (the recorder) must not let the other side pick another.
func registerCodecs(m *webrtc.MediaEngine, video []string) error {
	if video == nil {
		return m.RegisterDefaultCodecs()
	}
	opus := webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType:        111,
	}
	if err := m.RegisterCodec(opus, webrtc.RTPCodecTypeAudio); err != nil {
		return err
	}
	feedback := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	for _, want := range video {
		found := false
		for _, c := range videoCodecs {
			if !strings.EqualFold(c.mime, want) {
				continue
			}
			found = true
			codec := webrtc.RTPCodecParameters{
				RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: c.mime, ClockRate: 90000, SDPFmtpLine: c.fmtp, RTCPFeedback: feedback},
				PayloadType:        c.pt,
			}
			rtx := webrtc.RTPCodecParameters{
				RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: fmt.Sprintf("apt=%d", c.pt)},
				PayloadType:        c.rtx,
			}
			if err := m.RegisterCodec(codec, webrtc.RTPCodecTypeVideo); err != nil {
				return err
			}
			if err := m.RegisterCodec(rtx, webrtc.RTPCodecTypeVideo); err != nil {
				return err
			}
		}
		if !found {
			return fmt.Errorf("video codec %q is not one of VP8, VP9", want)
		}
	}
	return nil
}
