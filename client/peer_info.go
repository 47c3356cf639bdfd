package client

import (
	"fmt"

	"github.com/pion/webrtc/v4"
)

// Info reports the connection's state and selected candidate pair.
func (p *peer) Info() ConnInfo {
	info := ConnInfo{State: p.pc.ConnectionState(), ICEState: p.pc.ICEConnectionState()}
	sctp := p.pc.SCTP()
	if sctp == nil || sctp.Transport() == nil || sctp.Transport().ICETransport() == nil {
		return info
	}
	pair, err := sctp.Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Local == nil || pair.Remote == nil {
		return info
	}
	info.Local, info.Remote = pair.Local.Typ, pair.Remote.Typ
	info.LocalAddress = fmt.Sprintf("%s:%d", pair.Local.Address, pair.Local.Port)
	info.RemoteAddress = fmt.Sprintf("%s:%d", pair.Remote.Address, pair.Remote.Port)
	if pair.Local.Typ == webrtc.ICECandidateTypeRelay {
		info.RelayProtocol = p.relayProtocol(pair.Local)
	}
	return info
}

// relayProtocol is how our relay candidate c reaches its TURN server:
// "udp", "tcp" or "tls", from the candidate's stats (pion exposes it
// nowhere else); "" if the stats do not say.
func (p *peer) relayProtocol(c *webrtc.ICECandidate) string {
	for _, s := range p.pc.GetStats() {
		cs, ok := s.(webrtc.ICECandidateStats)
		if ok && cs.Type == webrtc.StatsTypeLocalCandidate && cs.CandidateType == webrtc.ICECandidateTypeRelay &&
			cs.IP == c.Address && cs.Port == int32(c.Port) {
			return cs.RelayProtocol
		}
	}
	return ""
}

// ConnInfo describes one peer connection.
type ConnInfo struct {
	State    webrtc.PeerConnectionState
	ICEState webrtc.ICEConnectionState
	// Local and Remote are the candidate types of the selected pair (host,
	// srflx, prflx or relay); zero until ICE selects a pair.
	Local, Remote               webrtc.ICECandidateType
	LocalAddress, RemoteAddress string
	// RelayProtocol is how our relay reaches the TURN server when the
	// local end is a relay candidate: "udp", "tcp" or "tls".
	RelayProtocol string
}

// Relayed reports whether the selected pair goes through a TURN relay.
func (i ConnInfo) Relayed() bool {
	return i.Local == webrtc.ICECandidateTypeRelay || i.Remote == webrtc.ICECandidateTypeRelay
}

// Kind is "relay", "srflx", "prflx" or "host": the most indirect candidate
// type of the selected pair, or "" before one is selected.
func (i ConnInfo) Kind() string {
	order := []webrtc.ICECandidateType{webrtc.ICECandidateTypeRelay, webrtc.ICECandidateTypeSrflx, webrtc.ICECandidateTypePrflx, webrtc.ICECandidateTypeHost}
	for _, t := range order {
		if i.Local == t || i.Remote == t {
			return t.String()
		}
	}
	return ""
}
