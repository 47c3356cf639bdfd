package turn

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestWebRTCThroughRelay: two pion/webrtc peers that may only use relay
// candidates connect through the server, with the ICE servers it hands
// out, and exchange a data-channel message. Both relays live on the
// server's own address (127.0.0.1), which no allow range opens: relaying
// between two allocations of one server needs no configuration.
func TestWebRTCThroughRelay(t *testing.T) {
	s, reg := startServer(t, nil)
	offerer := newRelayPeer(t, s, "offerer")
	answerer := newRelayPeer(t, s, "answerer")

	received := make(chan string, 1)
	answerer.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			select {
			case received <- string(m.Data):
			default:
			}
		})
	})
	dc, err := offerer.CreateDataChannel("chat", nil)
	if err != nil {
		t.Fatal(err)
	}
	dc.OnOpen(func() {
		if err := dc.SendText("hello through khadga turn"); err != nil {
			t.Errorf("send: %v", err)
		}
	})

	// No signaling server: the offer and answer are handed over directly,
	// once gathering is complete so that they carry the relay candidates.
	answerer.SetRemoteDescriptionOrFail(t, gatheredOffer(t, offerer.PeerConnection))
	offerer.SetRemoteDescriptionOrFail(t, gatheredAnswer(t, answerer.PeerConnection))

	select {
	case got := <-received:
		if got != "hello through khadga turn" {
			t.Fatalf("got %q", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no data-channel message through the relay")
	}
	pair, err := offerer.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("selected pair: %v, %v", pair, err)
	}
	if pair.Local.Typ != webrtc.ICECandidateTypeRelay || pair.Remote.Typ != webrtc.ICECandidateTypeRelay {
		t.Errorf("selected pair %s, want relay to relay", pair)
	}
	if n := metricValue(t, reg, "khadga_turn_relayed_bytes_total", map[string]string{"direction": "to_peer"}); n <= 0 {
		t.Errorf("no bytes relayed to peers (%v)", n)
	}
	if n := metricValue(t, reg, "khadga_turn_allocations_created_total", nil); n < 2 {
		t.Errorf("allocations created %v, want at least 2", n)
	}
}

type relayPeer struct{ *webrtc.PeerConnection }

// newRelayPeer is a PeerConnection restricted to relay candidates from s.
func newRelayPeer(t *testing.T, s *Server, user string) relayPeer {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.LoggerFactory = slogFactory{log: testLogger(t)}
	ice, _ := s.ICEServers(user)
	var servers []webrtc.ICEServer
	for _, e := range ice {
		servers = append(servers, webrtc.ICEServer{URLs: e.URLs, Username: e.Username, Credential: e.Credential})
	}
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{
		ICEServers:         servers,
		ICETransportPolicy: webrtc.ICETransportPolicyRelay,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pc.Close(); err != nil {
			t.Errorf("close %s: %v", user, err)
		}
	})
	return relayPeer{pc}
}

func (p relayPeer) SetRemoteDescriptionOrFail(t *testing.T, d webrtc.SessionDescription) {
	t.Helper()
	if err := p.SetRemoteDescription(d); err != nil {
		t.Fatal(err)
	}
}

func gatheredOffer(t *testing.T, pc *webrtc.PeerConnection) webrtc.SessionDescription {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return gathered(t, pc, offer)
}

func gatheredAnswer(t *testing.T, pc *webrtc.PeerConnection) webrtc.SessionDescription {
	t.Helper()
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return gathered(t, pc, answer)
}

// gathered sets d as the local description and returns it once ICE
// gathering is complete.
func gathered(t *testing.T, pc *webrtc.PeerConnection, d webrtc.SessionDescription) webrtc.SessionDescription {
	t.Helper()
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(d); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("ICE gathering did not complete")
	}
	return *pc.LocalDescription()
}
