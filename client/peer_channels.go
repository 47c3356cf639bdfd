package client

import (
	"log/slog"

	"github.com/pion/webrtc/v4"
)

// What the remote opens towards us besides the chat channel: file
// channels, and media tracks, each handed to the room it belongs to.

func (p *peer) onDataChannel(dc *webrtc.DataChannel) {
	if dc.Label() == fileLabel {
		p.acceptFileChannel(dc)
		return
	}
	p.log.Debug("closing unexpected data channel", slog.String("label", dc.Label()))
	_ = dc.Close()
}

func (p *peer) onTrack(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	room, ok := p.roomFor(track.StreamID())
	if !ok {
		room = p.anyRoom()
	}
	if room == "" {
		return
	}
	p.log.Debug("incoming track", slog.String("kind", track.Kind().String()), slog.String("codec", track.Codec().MimeType))
	p.host.emit(room, &IncomingTrack{Room: room, From: p.Member(), Track: track, Receiver: recv, pc: p.pc})
}
