package client

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/proto"
)

// This file holds a peer's life: newPeer, its loop and close. The rest
// lives beside it: negotiate.go (perfect negotiation and ICE restarts),
// peer_chat.go (the chat channel), peer_channels.go (files and tracks the
// remote opens), peer_rooms.go (the member record and shared rooms) and
// peer_info.go (the selected candidate pair).

// Limits that protect a peer from a misbehaving remote.
const (
	// peerOpQueue bounds the work queued for one peer's negotiation loop.
	peerOpQueue = 256
	// maxPendingCandidates bounds candidates held until a remote
	// description arrives.
	maxPendingCandidates = 128
	// maxRemoteCandidates bounds the candidates taken from a remote for
	// one set of its ICE credentials: pion keeps, pairs and checks every
	// one (sending STUN to the address it names), and a browser sends a
	// few dozen.
	maxRemoteCandidates = 256
	// maxMediaSections bounds the m-lines of a remote description. Each
	// is a transceiver, and each track on one that nobody reads (a
	// recorder's refused track, a track the application ignores) holds up
	// to 1 MB of pion's buffers: a peer must not make hundreds. One
	// connection carries everything between two peers: a video and an
	// audio track for each room they share (16 at most on a server with
	// the default limit) and the data channel, 33 m-lines, and a stopped
	// track's m-line is reused; 64 leaves room for more.
	maxMediaSections = 64
	// restartMinInterval spaces automatic ICE restarts.
	restartMinInterval = 3 * time.Second
	// disconnectedGrace is how long ICE may stay disconnected before the
	// impolite side restarts it. ICE itself waits iceDisconnectedTimeout
	// without an answer to its keepalives before it says disconnected,
	// so a restart starts some 4 s after the path broke: a call survives
	// a network change within 10 s (docs/networks.md, topology 6).
	disconnectedGrace = time.Second
	// chatChannelID is the SCTP stream of the negotiated chat channel.
	chatChannelID = 0
	// resendMinInterval spaces the copies of our descriptions that the
	// remote's signals make us send (mayResend).
	resendMinInterval = time.Second
	// requestFallback is how long the polite side waits for an offer it
	// asked for before offering itself.
	requestFallback = 10 * time.Second
	// maxRequestedTransceivers caps what one request may add, and
	// maxTransceiversPerKind what requests together may make of one kind
	// (counting ours): every transceiver is an m-line of every offer, and
	// a remote may send requests without end. 16 of each kind leave room
	// for a publication in each of 16 shared rooms (maxMediaSections).
	maxRequestedTransceivers = 8
	maxTransceiversPerKind   = 16
)

// wireSignal is the data of a signal message (proto.Signal). Pion cannot
// roll back a local offer, so the W3C pattern's polite rollback is
// impossible with it; instead the polite side never offers to a peer that
// honours proto.Renegotiate requests. Browsers that ignore them get a direct
// offer after requestFallback. Exactly one field is set.
type wireSignal proto.Signal

// renegotiate is the request the polite side sends instead of an offer.
type renegotiate = proto.Renegotiate

// valid reports whether exactly one field is set.
func (s wireSignal) valid() bool {
	n := 0
	for _, set := range []bool{s.Description != nil, s.Candidate != nil, s.Renegotiate != nil} {
		if set {
			n++
		}
	}
	return n == 1
}

// peerHost is what a peer needs from its owner: a way to send signals, and
// a way to deliver events to the rooms it shares with us. The Client is the
// host in production; tests wire two peers directly.
type peerHost interface {
	sendSignal(to, room string, s wireSignal) error
	emit(room string, ev Event) bool
	// probeSignaling checks the signaling connection soon: a peer
	// connection dropped, and the network may have changed under both.
	probeSignaling()
}

// peer is one remote peer: one PeerConnection, negotiated with the W3C
// "perfect negotiation" pattern. All signaling-state work runs on one
// goroutine (run), so there is no makingOffer race to guard: an offer is
// created and set in one step, and a remote offer that arrives while ours is
// pending is a collision. The polite side (proto.Polite) rolls its offer
// back and answers; the impolite side ignores the remote offer.
type peer struct {
	id     string
	self   string
	polite bool
	pc     *webrtc.PeerConnection
	host   peerHost
	log    *slog.Logger
	opts   *options

	ops    chan func()
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	// Owned by the run goroutine.
	ignoreOffer    bool
	pendingCands   []webrtc.ICECandidateInit
	candUfrag      string // the remote ICE ufrag the candidates below count for
	candCount      int    // candidates given to pion for it
	restartPending bool
	offerAgain     bool
	lastRestart    time.Time
	lastResend     time.Time // the last copy the remote made us send (mayResend)
	// asked is the polite side's last renegotiation request until an
	// offer follows it: sent again after a resume (resendRequest).
	asked *renegotiate
	// netChanged is when the host's addresses last changed, and
	// netRestartDue says a restart for it waits for restartMinInterval
	// (netwatch.go).
	netChanged    time.Time
	netRestartDue bool
	gotRemote     bool // a remote description was applied
	// Polite side: remoteRenegotiates is set once the remote answered a
	// request with an offer; directOffers once it failed to.
	remoteRenegotiates bool
	directOffers       bool
	requestSeq         int
	// Impolite side: transceivers the polite side asked room for.
	wantVideo, wantAudio int

	chat     *webrtc.DataChannel
	chatOpen atomic.Bool
	// pendingConsent holds consent messages until the chat channel opens
	// (consent.go); guarded by mu.
	pendingConsent map[string]consentMessage

	mu        sync.Mutex
	member    proto.Member
	rooms     map[string]bool
	incoming  int // open incoming transfers
	connected bool
}

// newPeer makes the PeerConnection for remote and starts its loop. The chat
// channel is negotiated (same id on both sides), so either side's offer
// carries it and neither waits for the other to open it.
func newPeer(api *webrtc.API, cfg webrtc.Configuration, self string, remote proto.Member, host peerHost, o *options) (*peer, error) {
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		return nil, fmt.Errorf("new peer connection: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &peer{
		id: remote.Peer, self: self, polite: proto.Polite(self, remote.Peer),
		pc: pc, host: host, opts: o,
		log: o.log.With(slog.String("remote", remote.Peer)),
		ops: make(chan func(), peerOpQueue),
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
		member: remote, rooms: map[string]bool{},
	}
	p.wire()
	negotiated := true
	id := uint16(chatChannelID)
	p.chat, err = pc.CreateDataChannel("chat", &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &id})
	if err != nil {
		cancel()
		_ = pc.Close()
		return nil, fmt.Errorf("create chat channel: %w", err)
	}
	p.wireChat()
	go p.run()
	return p, nil
}

func (p *peer) wire() {
	p.pc.OnNegotiationNeeded(func() { p.enqueue(func() { p.negotiate(false) }) })
	p.pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		init := c.ToJSON()
		// Sent from the negotiation loop, so after the description
		// whose SetLocalDescription started this gathering: pion
		// gathers at once, from its own goroutine, and a candidate of
		// an ICE restart that overtook its offer or answer would reach
		// a remote that does not know its ufrag yet, which drops it.
		p.enqueue(func() {
			if err := p.host.sendSignal(p.id, p.anyRoom(), wireSignal{Candidate: &proto.ICECandidate{
				Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex,
				UsernameFragment: init.UsernameFragment,
			}}); err != nil {
				p.log.Debug("send candidate", slog.Any("err", err))
			}
		})
	})
	p.pc.OnICEConnectionStateChange(p.onICEState)
	p.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		p.log.Debug("peer connection state", slog.String("state", s.String()))
		m := p.Member()
		for _, r := range p.Rooms() {
			p.host.emit(r, &PeerState{Room: r, Member: m, State: s})
		}
	})
	p.pc.OnDataChannel(p.onDataChannel)
	p.pc.OnTrack(p.onTrack)
}

// enqueue hands work to the negotiation loop without blocking the caller
// (often a pion callback or the signaling reader).
func (p *peer) enqueue(f func()) {
	select {
	case p.ops <- f:
	case <-p.ctx.Done():
	default:
		p.log.Warn("peer queue full; dropping work")
	}
}

func (p *peer) run() {
	defer close(p.done)
	for {
		select {
		case <-p.ctx.Done():
			return
		case f := <-p.ops:
			f()
		}
	}
}

// close ends the peer connection and waits for the loop to stop.
func (p *peer) close() {
	p.cancel()
	<-p.done
	if err := p.pc.Close(); err != nil {
		p.log.Debug("close peer connection", slog.Any("err", err))
	}
}
