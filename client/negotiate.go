package client

import (
	"log/slog"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/proto"
)

// Perfect negotiation for pion (see the peer type and wireSignal), and ICE
// restarts. Everything here runs on the peer's loop goroutine.

// negotiate starts a negotiation. The impolite side sends an offer. The
// polite side asks the impolite side for one instead (see wireSignal):
// pion cannot roll back a local offer, so two pion peers must never have
// offers out at once, and only the impolite side ever offers between them.
func (p *peer) negotiate(restart bool) {
	if p.ctx.Err() != nil {
		return
	}
	if p.polite && !p.directOffers {
		p.requestOffer(restart)
		return
	}
	p.offer(restart)
}

// offer sends an offer if the signaling state allows one. Pion fires
// negotiationneeded again on returning to stable when changes are still
// pending, so a skipped call is not lost.
func (p *peer) offer(restart bool) {
	if p.pc.SignalingState() != webrtc.SignalingStateStable {
		p.restartPending = p.restartPending || restart
		p.offerAgain = true
		return
	}
	restart = restart || p.restartPending
	p.restartPending, p.offerAgain = false, false
	p.addWanted(webrtc.RTPCodecTypeVideo, &p.wantVideo)
	p.addWanted(webrtc.RTPCodecTypeAudio, &p.wantAudio)
	if restart {
		p.lastRestart = time.Now()
	}
	offer, err := p.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: restart})
	if err != nil {
		p.log.Warn("create offer", slog.Any("err", err))
		return
	}
	if err := p.pc.SetLocalDescription(offer); err != nil {
		p.log.Warn("set local offer", slog.Any("err", err))
		return
	}
	p.log.Debug("sending offer", slog.Bool("ice_restart", restart))
	p.sendDescription(offer)
}

// addWanted adds the transceivers a polite peer asked for, up to
// maxTransceiversPerKind of the kind in all.
func (p *peer) addWanted(kind webrtc.RTPCodecType, n *int) {
	have := 0
	for _, tr := range p.pc.GetTransceivers() {
		if tr.Kind() == kind {
			have++
		}
	}
	if *n > 0 && have+*n > maxTransceiversPerKind {
		p.log.Debug("the remote asks for more media slots than a peer may have; adding what fits",
			slog.String("kind", kind.String()), slog.Int("asked", *n), slog.Int("have", have), slog.Int("limit", maxTransceiversPerKind))
	}
	for ; *n > 0 && have < maxTransceiversPerKind; *n, have = *n-1, have+1 {
		if _, err := p.pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
			p.log.Warn("add transceiver", slog.Any("err", err))
		}
	}
	*n = 0
}

// requestOffer is the polite side's negotiation: it tells the impolite side
// how many new transceivers of each kind it needs m-lines for, and whether
// ICE should restart. Before the first remote offer there is nothing to
// ask: the impolite side always offers first (it has the chat channel).
func (p *peer) requestOffer(restart bool) {
	if !p.gotRemote {
		p.restartPending = p.restartPending || restart
		return
	}
	req := &renegotiate{ICERestart: restart || p.restartPending}
	p.restartPending = false
	for _, tr := range p.pc.GetTransceivers() {
		if tr.Mid() != "" || tr.Sender() == nil || tr.Sender().Track() == nil {
			continue
		}
		switch tr.Kind() {
		case webrtc.RTPCodecTypeVideo:
			req.Video++
		case webrtc.RTPCodecTypeAudio:
			req.Audio++
		}
	}
	if err := p.host.sendSignal(p.id, p.anyRoom(), wireSignal{Renegotiate: req}); err != nil {
		p.log.Warn("send renegotiation request", slog.Any("err", err))
		return
	}
	p.asked = req
	p.log.Debug("asked for an offer", slog.Int("video", req.Video), slog.Int("audio", req.Audio), slog.Bool("ice_restart", req.ICERestart))
	if p.remoteRenegotiates {
		return
	}
	// A remote that ignores requests (a browser speaking plain perfect
	// negotiation) gets our own offer after a while.
	p.requestSeq++
	seq := p.requestSeq
	time.AfterFunc(requestFallback, func() {
		p.enqueue(func() {
			if seq == p.requestSeq && !p.remoteRenegotiates {
				p.log.Info("remote did not answer the renegotiation request; offering directly")
				p.directOffers = true
				p.offer(req.ICERestart)
			}
		})
	})
}

// onRenegotiate answers a polite peer's request with an offer that has
// room for its new transceivers. The added transceivers are sendrecv (with
// a silent placeholder track, as pion makes them): the polite side's
// transceiver is sendrecv too, and pion keeps asking to renegotiate while
// the negotiated direction differs from the transceiver's.
func (p *peer) onRenegotiate(req renegotiate) {
	if p.polite {
		p.log.Debug("ignoring renegotiation request: we are the polite side")
		return
	}
	// Requests that arrive while an offer is out are merged: the polite
	// side counts all its unmatched transceivers each time, so the largest
	// count is what it needs.
	p.wantVideo = min(max(p.wantVideo, req.Video), maxRequestedTransceivers)
	p.wantAudio = min(max(p.wantAudio, req.Audio), maxRequestedTransceivers)
	if req.ICERestart && p.mayResend() {
		// An ICE restart asked for while our offer is out: the polite
		// side may never have got it (it went down with a signaling
		// connection that died under a network change). A copy it did
		// get is answered again (duplicate).
		p.resendOffer()
	}
	p.offer(req.ICERestart)
}

// mayResend reports whether a copy of one of our descriptions may go out
// now because of what the remote sent (a restart request, a colliding
// offer, a copy of its offer), and if so counts it. A copy costs us a
// whole description for a signal of a few dozen bytes, and our signals'
// bytes are limited on the server for all our peers together: a remote
// that sent such signals without end would spend that budget, and our
// signals to everyone else would be refused. One copy a second is plenty
// for what the copies are for, a description lost with a signaling
// connection. Copies we send on our own (updateICEServers) are not
// counted. Runs on the loop.
func (p *peer) mayResend() bool {
	now := time.Now()
	if now.Sub(p.lastResend) < resendMinInterval {
		return false
	}
	p.lastResend = now
	return true
}

// resendOffer sends our unanswered offer again, with the candidates
// gathered since: the remote may have lost it. Both sides recognise the
// copies (duplicate), so one that crosses a quick answer does no harm.
func (p *peer) resendOffer() {
	if p.pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		return
	}
	if d := p.pc.PendingLocalDescription(); d != nil {
		p.log.Info("sending our unanswered offer again")
		p.sendDescription(*d)
	}
}

// resendRequest sends the polite side's last renegotiation request again
// if no offer has followed it: it may have gone down with a signaling
// connection that died, as under a network change, where the request
// asks for the ICE restart that brings the peer connection back, and
// nothing else would (until the remote's own ICE gives up, seconds later).
// A remote that had it offers once more, which does no harm.
func (p *peer) resendRequest() {
	if p.asked == nil {
		return
	}
	p.log.Info("sending our unanswered renegotiation request again", slog.Bool("ice_restart", p.asked.ICERestart))
	if err := p.host.sendSignal(p.id, p.anyRoom(), wireSignal{Renegotiate: p.asked}); err != nil {
		p.log.Warn("send renegotiation request", slog.Any("err", err))
	}
}

// resendAnswer sends our last answer again, if we are stable after
// answering: the remote may have lost it with a signaling connection that
// died, and it would then wait for it in have-local-offer for ever, every
// later negotiation with it stalled (nothing else brings an answer back).
// A remote that had it drops the copy (duplicate); one that offered again
// since has applied it, so the copy is a duplicate there too.
func (p *peer) resendAnswer() {
	if p.pc.SignalingState() != webrtc.SignalingStateStable {
		return
	}
	if d := p.pc.CurrentLocalDescription(); d != nil && d.Type == webrtc.SDPTypeAnswer {
		p.log.Info("sending our last answer again")
		p.sendDescription(*d)
	}
}

func (p *peer) sendDescription(d webrtc.SessionDescription) {
	err := p.host.sendSignal(p.id, p.anyRoom(), wireSignal{Description: &proto.SessionDescription{Type: d.Type.String(), SDP: d.SDP}})
	if err != nil {
		p.log.Warn("send description", slog.String("type", d.Type.String()), slog.Any("err", err))
	}
}

// handleSignal queues a signal from the remote peer.
func (p *peer) handleSignal(s wireSignal) {
	p.enqueue(func() {
		switch {
		case s.Description != nil:
			p.onDescription(*s.Description)
		case s.Candidate != nil:
			p.onCandidate(*s.Candidate)
		case s.Renegotiate != nil:
			p.onRenegotiate(*s.Renegotiate)
		}
	})
}

// onDescription is the receiving half of perfect negotiation.
func (p *peer) onDescription(d proto.SessionDescription) {
	typ := webrtc.NewSDPType(d.Type)
	if typ != webrtc.SDPTypeOffer && typ != webrtc.SDPTypeAnswer {
		p.log.Warn("ignoring description", slog.String("type", d.Type))
		return
	}
	if n := mediaSections(d.SDP); n > maxMediaSections {
		p.log.Warn("ignoring description: too many media sections", slog.String("type", d.Type),
			slog.Int("sections", n), slog.Int("max", maxMediaSections))
		return
	}
	if p.duplicate(typ, d.SDP) {
		return
	}
	collision := typ == webrtc.SDPTypeOffer && p.pc.SignalingState() != webrtc.SignalingStateStable
	p.ignoreOffer = !p.polite && collision
	if p.ignoreOffer {
		// The polite side rolls back and answers our offer, if it has
		// it: it may not (lost with a signaling connection that died
		// under a network change), and then both would wait for ever.
		// A copy it already had is answered again (duplicate).
		p.log.Debug("offer collision: impolite, ignoring remote offer")
		if p.mayResend() {
			p.resendOffer()
		}
		return
	}
	if typ == webrtc.SDPTypeOffer && p.polite {
		if p.requestSeq > 0 && !p.directOffers {
			p.remoteRenegotiates = true
		}
		p.requestSeq++ // cancels a pending fallback
		p.asked = nil
	}
	if typ == webrtc.SDPTypeAnswer && p.pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		// An answer to an offer we rolled back.
		p.log.Debug("ignoring answer in state " + p.pc.SignalingState().String())
		return
	}
	if collision {
		// Only reachable after a direct offer to a remote that does not
		// honour renegotiate (see requestOffer): the W3C polite side would
		// roll back here, which pion cannot do. Keep our offer; the
		// remote, if it is polite in turn, rolls back.
		p.log.Warn("offer collision on the polite side; pion cannot roll back, keeping our offer")
		return
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: typ, SDP: d.SDP}); err != nil {
		p.log.Warn("set remote description", slog.String("type", d.Type), slog.Any("err", err))
		return
	}
	p.gotRemote = true
	p.flushCandidates()
	if typ == webrtc.SDPTypeOffer {
		answer, err := p.pc.CreateAnswer(nil)
		if err != nil {
			p.log.Warn("create answer", slog.Any("err", err))
			return
		}
		if err := p.pc.SetLocalDescription(answer); err != nil {
			p.log.Warn("set local answer", slog.Any("err", err))
			return
		}
		p.sendDescription(answer)
	}
	if (p.restartPending || p.offerAgain) && p.pc.SignalingState() == webrtc.SignalingStateStable {
		p.negotiate(p.restartPending)
	}
}

// duplicate recognises a description we already applied, sent again by
// a remote that feared it lost (resendOffer): same origin line (session
// id and version), whatever candidates were added since. A copy of the
// offer we answered gets that answer again, so an offerer still waiting
// can go on; a copy of the answer we applied is dropped, so it can never
// be taken for the answer to a newer offer.
func (p *peer) duplicate(typ webrtc.SDPType, sdp string) bool {
	origin := sdpOrigin(sdp)
	if origin == "" {
		return false
	}
	switch {
	case typ == webrtc.SDPTypeOffer && p.pc.SignalingState() == webrtc.SignalingStateStable:
		rd, ld := p.pc.CurrentRemoteDescription(), p.pc.CurrentLocalDescription()
		if rd == nil || ld == nil || rd.Type != webrtc.SDPTypeOffer || sdpOrigin(rd.SDP) != origin {
			return false
		}
		if p.mayResend() {
			p.log.Info("offer received again; sending our answer again")
			p.sendDescription(*ld)
		}
		return true
	case typ == webrtc.SDPTypeAnswer:
		rd := p.pc.CurrentRemoteDescription()
		if rd == nil || rd.Type != webrtc.SDPTypeAnswer || sdpOrigin(rd.SDP) != origin {
			return false
		}
		p.log.Debug("answer received again; ignoring it")
		return true
	}
	return false
}

// mediaSections counts the m-lines of an SDP body.
func mediaSections(sdp string) int {
	n := 0
	for line := range strings.Lines(sdp) {
		if strings.HasPrefix(line, "m=") {
			n++
		}
	}
	return n
}

// sdpOrigin is the o= line of an SDP body, "" if it has none.
func sdpOrigin(sdp string) string {
	for line := range strings.Lines(sdp) {
		if strings.HasPrefix(line, "o=") {
			return strings.TrimRight(line, "\r\n")
		}
	}
	return ""
}

func (p *peer) onCandidate(c proto.ICECandidate) {
	init := webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}
	if c.Candidate == "" {
		return // end of candidates; pion needs nothing
	}
	if p.pc.RemoteDescription() == nil {
		if p.ignoreOffer {
			return
		}
		if len(p.pendingCands) < maxPendingCandidates {
			p.pendingCands = append(p.pendingCands, init)
		}
		return
	}
	if !p.countCandidate() {
		return
	}
	if err := p.pc.AddICECandidate(init); err != nil && !p.ignoreOffer {
		p.log.Debug("add candidate", slog.Any("err", err))
	}
}

// countCandidate counts a remote candidate against maxRemoteCandidates
// for the remote's current ICE credentials, and reports whether it may be
// used. An ICE restart (new credentials) counts afresh: pion drops the
// old candidates then.
func (p *peer) countCandidate() bool {
	if uf := remoteUfrag(p.pc.RemoteDescription()); uf != p.candUfrag {
		p.candUfrag, p.candCount = uf, 0
	}
	if p.candCount >= maxRemoteCandidates {
		if p.candCount == maxRemoteCandidates {
			p.log.Warn("ignoring the remote's candidates past the limit", slog.Int("max", maxRemoteCandidates))
			p.candCount++ // warn once
		}
		return false
	}
	p.candCount++
	return true
}

// remoteUfrag is the first a=ice-ufrag of d, "" if none.
func remoteUfrag(d *webrtc.SessionDescription) string {
	if d == nil {
		return ""
	}
	for line := range strings.Lines(d.SDP) {
		if uf, ok := strings.CutPrefix(line, "a=ice-ufrag:"); ok {
			return strings.TrimRight(uf, "\r\n")
		}
	}
	return ""
}

func (p *peer) flushCandidates() {
	for _, c := range p.pendingCands {
		if !p.countCandidate() {
			break
		}
		if err := p.pc.AddICECandidate(c); err != nil {
			p.log.Debug("add queued candidate", slog.Any("err", err))
		}
	}
	p.pendingCands = nil
}

// onICEState restarts ICE when it fails, or stays disconnected past a grace
// period. Only the impolite side restarts on its own, so that the two sides
// do not race to restart; the polite side answers the restart offer.
func (p *peer) onICEState(s webrtc.ICEConnectionState) {
	p.log.Debug("ice state", slog.String("state", s.String()))
	if s == webrtc.ICEConnectionStateDisconnected || s == webrtc.ICEConnectionStateFailed {
		// A restart needs signaling, which may be as dead as the path.
		p.host.probeSignaling()
	}
	if p.polite {
		return
	}
	switch s {
	case webrtc.ICEConnectionStateFailed:
		p.enqueue(p.autoRestart)
	case webrtc.ICEConnectionStateDisconnected:
		time.AfterFunc(disconnectedGrace, func() {
			if p.pc.ICEConnectionState() == webrtc.ICEConnectionStateDisconnected {
				p.enqueue(p.autoRestart)
			}
		})
	}
}

func (p *peer) autoRestart() {
	st := p.pc.ICEConnectionState()
	if st != webrtc.ICEConnectionStateFailed && st != webrtc.ICEConnectionStateDisconnected {
		return
	}
	if wait := restartMinInterval - time.Since(p.lastRestart); wait > 0 {
		time.AfterFunc(wait, func() { p.enqueue(p.autoRestart) })
		return
	}
	p.log.Info("restarting ICE", slog.String("ice_state", st.String()))
	p.negotiate(true)
}

// updateICEServers applies fresh ICE servers (from a welcome after a
// resume). Pion uses new servers from the next gathering, so ICE restarts
// now only if the connection needs them: it is failed or disconnected, or
// it goes through a TURN relay, whose allocation must be refreshed with
// credentials that have not expired (the TURN server checks expiry on
// every refresh). A direct connection is left alone.
func (p *peer) updateICEServers(cfg webrtc.Configuration) {
	p.enqueue(func() {
		cur := p.pc.GetConfiguration()
		cur.ICEServers = cfg.ICEServers
		if err := p.pc.SetConfiguration(cur); err != nil {
			p.log.Warn("set configuration", slog.Any("err", err))
			return
		}
		// Signals sent while the old connection was dying may be lost:
		// an offer still unanswered goes out again, and so does our last
		// answer.
		p.resendOffer()
		p.resendAnswer()
		p.resendRequest()
		st := p.pc.ICEConnectionState()
		down := st == webrtc.ICEConnectionStateFailed || st == webrtc.ICEConnectionStateDisconnected
		if down || p.Info().Relayed() {
			p.log.Info("restarting ICE with new servers", slog.String("ice_state", st.String()), slog.Bool("relayed", !down))
			p.negotiate(true)
		}
	})
}
