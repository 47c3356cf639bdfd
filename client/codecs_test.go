package client

import (
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

func TestWithVideoCodecsLimitsTheOffer(t *testing.T) {
	for _, tc := range []struct {
		codecs    []string
		want, not []string
	}{
		{nil, []string{"VP8/90000", "H264/90000", "VP9/90000"}, nil},
		{[]string{webrtc.MimeTypeVP8, webrtc.MimeTypeVP9}, []string{"VP8/90000", "VP9/90000", "opus/48000"}, []string{"H264", "AV1"}},
		{[]string{webrtc.MimeTypeVP9}, []string{"VP9/90000"}, []string{"VP8", "H264"}},
	} {
		m := &webrtc.MediaEngine{}
		if err := registerCodecs(m, tc.codecs); err != nil {
			t.Fatal(err)
		}
		pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m)).NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio); err != nil {
			t.Fatal(err)
		}
		offer, err := pc.CreateOffer(nil)
		pc.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(offer.SDP, w) {
				t.Errorf("codecs %v: offer lacks %s", tc.codecs, w)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(offer.SDP, n) {
				t.Errorf("codecs %v: offer has %s", tc.codecs, n)
			}
		}
	}
	if err := registerCodecs(&webrtc.MediaEngine{}, []string{"video/H264"}); err == nil {
		t.Fatal("H264 accepted")
	}
}
