package client

import (
	"context"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// AudioSource produces encoded audio frames, Opus: client/media/opus's
// ToneSource is one. NextSample returns io.EOF when the source ends. A
// sample's Timestamp, if set, is when it was captured, as for a
// VideoSource: set it on both, and a receiver keeps them in step however
// long each took to return its first sample.
type AudioSource interface {
	// MimeType is the codec, webrtc.MimeTypeOpus.
	MimeType() string
	// NextSample returns the next encoded frame and its duration, and
	// returns soon after ctx is done, as a VideoSource's does.
	NextSample(ctx context.Context) (media.Sample, error)
}

// PublishAudio starts an audio publication in the room, like
// PublishVideo: samples are pulled from src, paced by their durations,
// only while a chosen peer receives, and go only to the peers named in
// SendTo (a recorder only with ConsentToRecording). Audio and video
// published in one room are one stream, so a receiver can keep them in
// step (by RTCP sender reports).
func (r *Room) PublishAudio(src AudioSource) (*Publication, error) {
	return r.publish(src, webrtc.RTPCodecCapability{MimeType: src.MimeType(), ClockRate: 48000, Channels: 2}, "audio")
}
