package recorder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"

	"github.com/khadga/khadga/client/media/vpx"
)

// RTPReader is where a track's packets come from; *webrtc.TrackRemote is one.
type RTPReader interface {
	ReadRTP() (*rtp.Packet, interceptor.Attributes, error)
}

// The sample builder holds frames back while a packet is missing, hoping for
// a late, reordered or retransmitted (NACK) copy; after this many packets or
// this much RTP time it gives the frame up as lost.
const (
	maxLatePackets = 128
	maxLateTime    = 200 * time.Millisecond
)

// picture is the picture id of a frame's first packet, if it has one.
type picture struct {
	id  uint16
	has bool
}

// ReadRTP assembles frames from src's packets with pion's samplebuilder and
// hands them to Frame, until src fails or ends (io.EOF is a normal end) or
// ctx is done, or the track is over its CPU budget (errOverBudget). A
// loss is any of: packets the builder dropped, a jump in the RTP sequence
// numbers between frames, or a jump in the picture id. It does not close
// the pipeline.
func (p *Pipeline) ReadRTP(ctx context.Context, src RTPReader) error {
	var depack rtp.Depacketizer
	var head func(any) any
	switch p.info.Codec {
	case vpx.VP8:
		depack = &codecs.VP8Packet{}
		head = func(d any) any {
			v := d.(*codecs.VP8Packet)
			return picture{v.PictureID, v.I == 1}
		}
	case vpx.VP9:
		depack = &codecs.VP9Packet{}
		head = func(d any) any {
			v := d.(*codecs.VP9Packet)
			return picture{v.PictureID, v.I}
		}
	default:
		return fmt.Errorf("%w %s", ErrNoDecoder, p.info.Codec)
	}
	sb := samplebuilder.New(maxLatePackets, depack, 90000,
		samplebuilder.WithRTPHeaders(true), samplebuilder.WithPacketHeadHandler(head),
		samplebuilder.WithMaxTimeDelay(maxLateTime))
	// A reader blocked in ReadRTP is woken by a deadline when ctx ends.
	if d, ok := src.(interface{ SetReadDeadline(time.Time) error }); ok {
		stop := context.AfterFunc(ctx, func() { d.SetReadDeadline(time.Now()) })
		defer stop()
	}
	var (
		lastSeq  uint16
		haveSeq  bool
		lastPic  picture
		pidMask  uint16 = 0x7f
		seenData bool
	)
	pop := func() {
		for s := sb.Pop(); s != nil; s = sb.Pop() {
			if len(s.RTPHeaders) == 0 {
				continue
			}
			lost := s.PrevDroppedPackets > 0
			first, last := s.RTPHeaders[0].SequenceNumber, s.RTPHeaders[len(s.RTPHeaders)-1].SequenceNumber
			if haveSeq && first != lastSeq+1 {
				lost = true
			}
			lastSeq, haveSeq = last, true
			if pic, ok := s.Metadata.(picture); ok && pic.has {
				if pic.id > 0x7f {
					pidMask = 0x7fff
				}
				if lastPic.has && pic.id != (lastPic.id+1)&pidMask {
					lost = true
				}
				lastPic = pic
			}
			// The first frame has nothing before it to have lost.
			p.Frame(s.Data, s.PacketTimestamp, time.Now(), lost && seenData)
			seenData = true
			if p.opts.budget.exceeded() {
				return
			}
		}
	}
	for {
		pkt, _, err := src.ReadRTP()
		if err != nil {
			if errors.Is(err, io.EOF) {
				// The stream ended: the frames held back are complete.
				sb.Flush()
				pop()
				return nil
			}
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("recorder: read RTP: %w", err)
		}
		sb.Push(pkt)
		pop()
		if p.opts.budget.exceeded() {
			return errOverBudget
		}
	}
}
