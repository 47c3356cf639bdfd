//go:build cgo

package recorder

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/transport/v5/vnet"
	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/client/media"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// lossyNetwork is pion's virtual network between two peers, whose router
// drops 5% of the sender's RTP video packets for good: a dropped sequence
// number is dropped again when NACK resends it, and RTX retransmissions
// are dropped too, so the receiver sees real, unrecoverable loss.
type lossyNetwork struct {
	sender, receiver *vnet.Net
	mu               sync.Mutex
	dropped          map[uint32]bool // ssrc<<16 | seq
	rng              *rand.Rand
	media, lost      int
}

const senderIP, receiverIP = "10.6.0.2", "10.6.0.3"

func newLossyNetwork(t *testing.T, loss float64) *lossyNetwork {
	t.Helper()
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "10.6.0.0/24", LoggerFactory: client.NewPionLoggerFactory(testLogger(t))})
	if err != nil {
		t.Fatal(err)
	}
	n := &lossyNetwork{dropped: map[uint32]bool{}, rng: rand.New(rand.NewPCG(6, 5))}
	if n.sender, err = vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{senderIP}}); err != nil {
		t.Fatal(err)
	}
	if n.receiver, err = vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{receiverIP}}); err != nil {
		t.Fatal(err)
	}
	if err := wan.AddNet(n.sender); err != nil {
		t.Fatal(err)
	}
	if err := wan.AddNet(n.receiver); err != nil {
		t.Fatal(err)
	}
	wan.AddChunkFilter(func(c vnet.Chunk) bool { return n.pass(c, loss) })
	if err := wan.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wan.Stop() })
	return n
}

// pass decides a packet's fate. RTP keeps its header in the clear under
// SRTP: version 2 and a dynamic payload type (96..127) mark media; RTCP's
// types (200..206) fall outside that range.
func (n *lossyNetwork) pass(c vnet.Chunk, loss float64) bool {
	src, ok := c.SourceAddr().(*net.UDPAddr)
	b := c.UserData()
	if !ok || src.IP.String() != senderIP || len(b) < 12 || b[0]>>6 != 2 {
		return true
	}
	pt := b[1] & 0x7f
	if pt < 96 {
		return true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if pt != 96 { // not VP8 itself: an RTX retransmission
		return false
	}
	n.media++
	key := binary.BigEndian.Uint32(b[8:12])<<16 | uint32(binary.BigEndian.Uint16(b[2:4]))
	if n.dropped[key] {
		return false
	}
	if n.rng.Float64() < loss {
		n.dropped[key] = true
		n.lost++
		return false
	}
	return true
}

func (n *lossyNetwork) engine(vn *vnet.Net) webrtc.SettingEngine {
	var se webrtc.SettingEngine
	se.SetNet(vn)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return se
}

// TestE2ELossRequestsKeyFrames: with 5% of the RTP packets from alice to
// the recorder lost, the recorder asks for key frames, reports the frames
// it had to drop, and never writes a damaged frame: every frame it keeps
// (all of them, at fps 0) matches its test pattern frame at >= 30 dB.
func TestE2ELossRequestsKeyFrames(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	netw := newLossyNetwork(t, 0.05)
	dir := t.TempDir()
	rec := startRecorder(t, s, "lossy", dir, func(c *Config) {
		c.FPS = -1 // every frame
		c.ClientOptions = []client.Option{client.WithSettingEngine(netw.engine(netw.receiver))}
	})
	_, alice := joinPeer(t, s, "alice", "lossy", rec.self.Peer, client.WithSettingEngine(netw.engine(netw.sender)))
	src, err := media.NewTestPattern(media.PatternConfig{Frames: 150, FPS: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	pub, err := alice.PublishVideo(src)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.SendTo(rec.self.Peer, client.ConsentToRecording()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pub.Done():
	case <-time.After(e2eTimeout):
		t.Fatal("publication did not end")
	}
	// Frames lost for good never arrive: wait for what can.
	waitFrames(t, rec, "alice", 130)
	rec.stop(t)

	netw.mu.Lock()
	t.Logf("network: %d of %d video packets lost", netw.lost, netw.media)
	netw.mu.Unlock()
	var st TrackStats
	for _, tr := range rec.Tracks() {
		st = tr.Stats
	}
	t.Logf("recorder: %+v", st)
	if st.Gaps == 0 || st.PLIs == 0 || st.Dropped.Gap == 0 {
		t.Errorf("loss not detected, no key frame asked for, or drops not counted: %+v", st)
	}
	clips := loadShards(t, dir, DefaultSize)
	if len(clips) == 0 {
		t.Fatal("nothing recorded")
	}
	var written int
	var gapDrops int64
	for _, c := range clips {
		written += len(c.frames)
		gapDrops += c.meta.Dropped.Gap
	}
	if written < 30 || int64(written) != st.Written || gapDrops != st.Dropped.Gap {
		t.Errorf("%d frames written, %d gap drops in metadata; stats %+v", written, gapDrops, st)
	}
	low := matchPattern(t, clips, DefaultSize, 320, 240)
	t.Logf("%d frames written, lowest PSNR %.1f dB", written, low)
}
