package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/khadga/khadga/proto"
)

func TestPeerChatBothWays(t *testing.T) {
	a, b, ea, eb := newTestPair(t)
	waitEvent[*PeerConnected](t, ea, nil)
	waitEvent[*PeerConnected](t, eb, nil)
	if err := a.sendChat("r", "hello from a"); err != nil {
		t.Fatal(err)
	}
	m := waitEvent[*Message](t, eb, nil)
	if m.Text != "hello from a" || m.From.User != "alice" || m.Room != "r" {
		t.Fatalf("b got %+v", m)
	}
	if err := b.sendChat("r", "hello from b"); err != nil {
		t.Fatal(err)
	}
	m = waitEvent[*Message](t, ea, nil)
	if m.Text != "hello from b" || m.From.User != "bob" {
		t.Fatalf("a got %+v", m)
	}
	// A message naming a room the peers do not share is dropped.
	if err := a.sendChat("other", "not for you"); err != nil {
		t.Fatal(err)
	}
	if err := a.sendChat("r", "after"); err != nil {
		t.Fatal(err)
	}
	if m := waitEvent[*Message](t, eb, nil); m.Text != "after" {
		t.Fatalf("b got %q, want the message for the shared room only", m.Text)
	}
	if info := a.Info(); info.Kind() != "host" && info.Kind() != "prflx" {
		t.Fatalf("loopback pair should be host or prflx, got %+v", info)
	}
}

// TestPeerNegotiationGlare makes both sides offer at once, repeatedly, and
// both restart ICE at once; the connection must converge and keep working.
func TestPeerNegotiationGlare(t *testing.T) {
	a, b, ea, eb := newTestPair(t)
	waitEvent[*PeerConnected](t, ea, nil)
	waitEvent[*PeerConnected](t, eb, nil)
	for i := 0; i < 5; i++ {
		restart := i%2 == 1
		a.enqueue(func() { a.negotiate(restart) })
		b.enqueue(func() { b.negotiate(restart) })
	}
	// A renegotiation with new media on both sides at once: each side must
	// end up receiving the other's track.
	var tracks []*webrtc.TrackLocalStaticSample
	for _, p := range []*peer{a, b} {
		tr, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "v", "r")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.pc.AddTrack(tr); err != nil {
			t.Fatal(err)
		}
		tracks = append(tracks, tr)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond) // a frame rate, not synchronisation
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				for _, tr := range tracks {
					_ = tr.WriteSample(media.Sample{Data: []byte{0x10, 0, 0, 0}, Duration: 20 * time.Millisecond})
				}
			}
		}
	}()
	if tr := waitEvent[*IncomingTrack](t, ea, nil); tr.From.User != "bob" {
		t.Fatalf("a got a track from %+v", tr.From)
	}
	if tr := waitEvent[*IncomingTrack](t, eb, nil); tr.From.User != "alice" {
		t.Fatalf("b got a track from %+v", tr.From)
	}
	for _, p := range []*peer{a, b} {
		waitStable(t, p)
	}
	if err := a.sendChat("r", "still here"); err != nil {
		t.Fatal(err)
	}
	if m := waitEvent[*Message](t, eb, nil); m.Text != "still here" {
		t.Fatalf("got %q", m.Text)
	}
}

// TestCandidatesFollowTheirDescription: a candidate goes out only after
// the description that carries its ufrag. Pion gathers from its own
// goroutine as soon as SetLocalDescription runs; a candidate of an ICE
// restart that overtook its offer or answer reached a remote that did not
// know the new ufrag yet, which dropped it, and the restarted connection
// then had no candidates and never connected (seen under load in
// TestE2ESimultaneousNegotiation).
func TestCandidatesFollowTheirDescription(t *testing.T) {
	a, b, ea, eb := newTestPair(t)
	waitEvent[*PeerConnected](t, ea, nil)
	waitEvent[*PeerConnected](t, eb, nil)
	for range 6 {
		b.enqueue(func() { b.negotiate(true) })
		waitStable(t, b)
		waitStable(t, a)
	}
	for _, p := range []*peer{a, b} {
		h := p.host.(*pipeHost)
		h.mu.Lock()
		sent := slices.Clone(h.sent)
		h.mu.Unlock()
		described := map[string]bool{}
		ufrags := 0
		for i, s := range sent {
			switch {
			case s.Description != nil:
				for line := range strings.Lines(s.Description.SDP) {
					if u, ok := strings.CutPrefix(strings.TrimSpace(line), "a=ice-ufrag:"); ok && !described[u] {
						described[u] = true
						ufrags++
					}
				}
			case s.Candidate != nil && s.Candidate.UsernameFragment != nil:
				if u := *s.Candidate.UsernameFragment; !described[u] {
					t.Fatalf("%s: signal %d is a candidate for ufrag %s, sent before any description with it", p.self, i, u)
				}
			}
		}
		if ufrags < 6 {
			t.Fatalf("%s described %d ufrags; want the first and at least 5 restarts", p.self, ufrags)
		}
	}
}

// waitStable waits until a peer's negotiation has settled: stable, with
// both sides' transceivers negotiated, and connected.
func waitStable(t *testing.T, p *peer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for {
		done := make(chan bool, 1)
		p.enqueue(func() {
			ok := p.pc.SignalingState() == webrtc.SignalingStateStable &&
				p.pc.ConnectionState() == webrtc.PeerConnectionStateConnected
			for _, tr := range p.pc.GetTransceivers() {
				ok = ok && tr.Mid() != ""
			}
			done <- ok
		})
		select {
		case ok := <-done:
			if ok {
				return
			}
		case <-ctx.Done():
			t.Fatalf("peer %s did not settle: signaling %s, connection %s", p.self, p.pc.SignalingState(), p.pc.ConnectionState())
		}
		// Let queued signals run before asking again: the check itself
		// went through the same queue, so this is ordering, not timing.
		select {
		case <-ctx.Done():
		case <-afterOps(p):
		}
	}
}

// afterOps returns a channel closed once everything queued on p so far ran.
func afterOps(p *peer) <-chan struct{} {
	ch := make(chan struct{})
	p.enqueue(func() { close(ch) })
	return ch
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPeerFileTransfer(t *testing.T) {
	a, _, ea, eb := newTestPair(t)
	waitEvent[*PeerConnected](t, ea, nil)
	waitEvent[*PeerConnected](t, eb, nil)
	data := randomBytes(t, 5<<20+123)
	want := sha256.Sum256(data)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	st, err := a.sendFile(ctx, "r", "data.bin", bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	f := waitEvent[*IncomingFile](t, eb, nil)
	if f.Name != "data.bin" || f.Size != int64(len(data)) || f.From.User != "alice" {
		t.Fatalf("offer %+v", f)
	}
	var got bytes.Buffer
	rt, err := f.Accept(&got)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Wait(ctx); err != nil {
		t.Fatalf("receiver: %v", err)
	}
	if err := st.Wait(ctx); err != nil {
		t.Fatalf("sender: %v", err)
	}
	if sum := sha256.Sum256(got.Bytes()); sum != want {
		t.Fatal("received bytes differ")
	}
	if rt.SHA256() != hex.EncodeToString(want[:]) || st.SHA256() != rt.SHA256() {
		t.Fatalf("digests: sender %s receiver %s", st.SHA256(), rt.SHA256())
	}
	if d, total := rt.Progress(); d != total {
		t.Fatalf("receiver progress %d/%d", d, total)
	}
}

func TestPeerFileRejected(t *testing.T) {
	a, _, ea, eb := newTestPair(t)
	waitEvent[*PeerConnected](t, ea, nil)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	st, err := a.sendFile(ctx, "r", "x.txt", bytes.NewReader([]byte("hello")), 5)
	if err != nil {
		t.Fatal(err)
	}
	// The reason is the remote's text: its terminal escapes (here OSC 52,
	// which writes the clipboard) must not reach the sender's terminal.
	waitEvent[*IncomingFile](t, eb, nil).Reject("no thanks\x1b]52;c;cm0gLXJmIH4=\x07")
	err = st.Wait(ctx)
	if !errors.Is(err, ErrTransferRejected) {
		t.Fatalf("sender got %v, want ErrTransferRejected", err)
	}
	if msg := err.Error(); strings.ContainsAny(msg, "\x1b\x07") || !strings.Contains(msg, `no thanks\x1b]52`) {
		t.Fatalf("sender's error %q: want the reason with its control characters escaped", msg)
	}
}

func TestPeerText(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"plain", 200, "plain"},
		{"a\x1b[2Jb\u202e", 200, `a\x1b[2Jb\u202e`},
		{"\u0085next line", 200, `\u0085next line`},
		{"ééé", 3, "é…"}, // cut at a character, not inside one
		{"abcdef", 3, "abc…"},
	} {
		if got := peerText(c.in, c.n); got != c.want {
			t.Errorf("peerText(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

// TestPeerFileBackpressure: a receiver whose writer stops taking bytes
// stops the sender. The sender reads at most what the receiver took, the
// SCTP receive window it holds unread (sctpReceiveWindow), the sender's own
// queue and a few chunks, never the whole source.
func TestPeerFileBackpressure(t *testing.T) {
	a, _, ea, eb := newTestPair(t)
	waitEvent[*PeerConnected](t, ea, nil)
	waitEvent[*PeerConnected](t, eb, nil)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	const size = 256 << 20
	src := &countingZeros{}
	st, err := a.sendFile(ctx, "r", "big.bin", src, size)
	if err != nil {
		t.Fatal(err)
	}
	g := &gateWriter{n: 1 << 20, reached: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(func() { close(g.release) }) // runs before the peers close
	if _, err := waitEvent[*IncomingFile](t, eb, nil).Accept(g); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.reached:
	case <-ctx.Done():
		t.Fatal("the receiver never took its first MiB")
	}
	const bound = 1<<20 + sctpReceiveWindow + fileHighWater + 4*fileChunk + 2<<20 // the last 2 MiB are slack
	// Watch for a while: a sender without backpressure reads the whole
	// zero source in a fraction of this.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	watch := time.NewTimer(2 * time.Second)
	defer watch.Stop()
	for {
		if n := src.n.Load(); n > bound {
			t.Fatalf("sender read %d bytes with the receiver stuck after 1 MiB; bound %d", n, bound)
		}
		select {
		case <-st.Done():
			t.Fatalf("transfer ended with the receiver stuck: %v", st.Err())
		case <-tick.C:
			continue
		case <-watch.C:
		}
		break
	}
	t.Logf("sender read %d bytes of %d with the receiver stuck (bound %d)", src.n.Load(), int64(size), int64(bound))
}

// countingZeros is an endless source of zeros that counts what was read.
type countingZeros struct{ n atomic.Int64 }

func (z *countingZeros) Read(p []byte) (int, error) {
	clear(p)
	z.n.Add(int64(len(p)))
	return len(p), nil
}

// gateWriter takes n bytes, then blocks until released.
type gateWriter struct {
	n       int64
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gateWriter) Write(p []byte) (int, error) {
	if g.n <= 0 {
		g.once.Do(func() { close(g.reached) })
		<-g.release
		return 0, errors.New("writer released")
	}
	g.n -= int64(len(p))
	return len(p), nil
}

// gateReader yields n bytes, then blocks until released.
type gateReader struct {
	r       io.Reader
	n       int64
	reached chan struct{}
	release chan struct{}
	once    sync.Once
	resume  bool // once released, go on with r; else fail
}

func (g *gateReader) Read(p []byte) (int, error) {
	if g.n <= 0 {
		g.once.Do(func() { close(g.reached) })
		<-g.release
		if g.resume {
			return g.r.Read(p)
		}
		return 0, io.ErrUnexpectedEOF
	}
	if int64(len(p)) > g.n {
		p = p[:g.n]
	}
	n, err := g.r.Read(p)
	g.n -= int64(n)
	return n, err
}

// TestPeerFileInterrupted closes the sender's connection mid-transfer: the
// receiver must report ErrTransferInterrupted, not a short file.
func TestPeerFileInterrupted(t *testing.T) {
	a, _, ea, eb := newTestPair(t)
	waitEvent[*PeerConnected](t, ea, nil)
	data := randomBytes(t, 4<<20)
	g := &gateReader{r: bytes.NewReader(data), n: 1 << 20, reached: make(chan struct{}), release: make(chan struct{})}
	defer close(g.release)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := a.sendFile(ctx, "r", "big.bin", g, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	f := waitEvent[*IncomingFile](t, eb, nil)
	var got bytes.Buffer
	rt, err := f.Accept(&got)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.reached:
	case <-ctx.Done():
		t.Fatal("sender never reached the gate")
	}
	if err := a.pc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rt.Wait(ctx); !errors.Is(err, ErrTransferInterrupted) {
		t.Fatalf("receiver got %v, want ErrTransferInterrupted", err)
	}
	if d, total := rt.Progress(); d >= total {
		t.Fatalf("progress %d/%d: the transfer should have been cut short", d, total)
	}
}

// TestRemoteCandidatesBounded: a remote may trickle candidates without
// end once a description is set; pion would keep, pair and check each
// (sending STUN wherever they point). Past maxRemoteCandidates for one set
// of the remote's ICE credentials they are ignored, and the connection
// stays up.
func TestRemoteCandidatesBounded(t *testing.T) {
	a, _, ea, _ := newTestPair(t)
	waitEvent[*PeerConnected](t, ea, nil)
	const n = maxRemoteCandidates + 300
	sync := func() {
		done := make(chan struct{})
		a.enqueue(func() { close(done) })
		<-done
	}
	for i := range n {
		a.handleSignal(wireSignal{Candidate: &proto.ICECandidate{
			Candidate: fmt.Sprintf("candidate:%d 1 udp 2130706431 127.0.0.1 %d typ host", i+100, 20000+i),
		}})
		if i%200 == 199 {
			sync() // the loop's queue holds peerOpQueue
		}
	}
	sync()
	var count int
	a.enqueue(func() { count = a.candCount })
	sync()
	if count > maxRemoteCandidates+1 { // +1: the warning's mark
		t.Fatalf("%d of %d trickled candidates given to pion, want at most %d", count, n, maxRemoteCandidates)
	}
	if count < maxRemoteCandidates {
		t.Fatalf("only %d candidates counted: the flood did not reach the limit", count)
	}
	if s := a.pc.ConnectionState(); s != webrtc.PeerConnectionStateConnected {
		t.Fatalf("connection %s after the flood", s)
	}
}

// TestChatWithinTheLimitArrives: a message within MaxMessageText arrives
// whatever it holds. JSON spells '<', '>' and '&' in six bytes each, and
// a receiver that capped the frame near MaxMessageText dropped such a
// message without a word while the sender counted it delivered.
func TestChatWithinTheLimitArrives(t *testing.T) {
	a, _, ea, eb := newTestPair(t)
	waitEvent[*PeerConnected](t, ea, nil)
	waitEvent[*PeerConnected](t, eb, nil)
	text := strings.Repeat("<\x01&", MaxMessageText/3) // every byte six in JSON
	if len(text) > MaxMessageText {
		t.Fatal("test text too long")
	}
	for _, m := range []string{text, "after"} {
		if err := a.sendChat("r", m); err != nil {
			t.Fatal(err)
		}
	}
	if m := waitEvent[*Message](t, eb, nil); m.Text != text {
		t.Fatalf("b got %d bytes %.20q..., want the %d-byte message first", len(m.Text), m.Text, len(text))
	}
}

// loseAnswer loses the next answer it is asked to send, as a signaling
// socket that dies loses what its writer had taken from the queue.
type loseAnswer struct {
	*pipeHost
	armed atomic.Bool
	lost  chan struct{}
}

func (h *loseAnswer) sendSignal(to, room string, s wireSignal) error {
	if s.Description != nil && s.Description.Type == "answer" && h.armed.CompareAndSwap(true, false) {
		close(h.lost)
		return nil
	}
	return h.pipeHost.sendSignal(to, room, s)
}

// offerWithLostAnswer has b (impolite) add a track and offer, and waits
// until a's answer is lost (lost gets a value) and b is left with its
// offer out, in have-local-offer.
func offerWithLostAnswer(t *testing.T, a, b *peer, lost <-chan struct{}) {
	t.Helper()
	tr, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "v", "r")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.pc.AddTrack(tr); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(testTimeout):
		t.Fatal("a never answered")
	}
	<-afterOps(a)
	<-afterOps(b)
	if st := b.pc.SignalingState(); st != webrtc.SignalingStateHaveLocalOffer {
		t.Fatalf("b is %s after its answer was lost, want have-local-offer", st)
	}
}

// TestLostAnswerAfterResume: an answer lost with a dying signaling socket
// is sent again once the socket resumes. Before, only an unanswered offer
// was: the offerer waited in have-local-offer for ever, and no later
// track or transfer between the two was ever negotiated.
func TestLostAnswerAfterResume(t *testing.T) {
	var h *loseAnswer
	a, b, _, _ := newTestPairVia(t, func(p *pipeHost) peerHost {
		h = &loseAnswer{pipeHost: p, lost: make(chan struct{})}
		return h
	})
	waitStable(t, a)
	waitStable(t, b)

	// b (impolite) adds a track and offers; a's answer is lost.
	h.armed.Store(true)
	offerWithLostAnswer(t, a, b, h.lost)
	a.updateICEServers(webrtc.Configuration{}) // a's socket resumed: a new welcome
	waitStable(t, b)
	waitStable(t, a)
}

// TestRemoteMediaSectionsBounded: a description with more m-lines than
// maxMediaSections is not applied. Each would be a transceiver, and each
// unread track on one holds up to 1 MB of pion's buffers (a recorder
// leaves the tracks it refuses unread). The connection stays as it was.
func TestRemoteMediaSectionsBounded(t *testing.T) {
	a, _, ea, _ := newTestPair(t)
	waitEvent[*PeerConnected](t, ea, nil)
	other, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for range maxMediaSections + 8 {
		if _, err := other.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
			webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := other.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := mediaSections(offer.SDP); n != maxMediaSections+8 {
		t.Fatalf("the offer has %d media sections, want %d", n, maxMediaSections+8)
	}
	var before int
	done := make(chan struct{})
	a.enqueue(func() { before = len(a.pc.GetTransceivers()); close(done) })
	<-done
	a.handleSignal(wireSignal{Description: &proto.SessionDescription{Type: "offer", SDP: offer.SDP}})
	var after int
	var state webrtc.SignalingState
	done = make(chan struct{})
	a.enqueue(func() { after, state = len(a.pc.GetTransceivers()), a.pc.SignalingState(); close(done) })
	<-done
	if after != before || state != webrtc.SignalingStateStable {
		t.Fatalf("after an offer of %d m-lines: %d transceivers (%d before), signaling %s", maxMediaSections+8, after, before, state)
	}
	if s := a.pc.ConnectionState(); s != webrtc.PeerConnectionStateConnected {
		t.Fatalf("connection %s after the offer", s)
	}
}

// dropAnswers loses every answer a peer sends once armed.
type dropAnswers struct {
	*pipeHost
	armed   atomic.Bool
	dropped chan struct{} // gets a value for each answer lost
}

func (h *dropAnswers) sendSignal(to, room string, s wireSignal) error {
	if s.Description != nil && s.Description.Type == "answer" && h.armed.Load() {
		select {
		case h.dropped <- struct{}{}:
		default:
		}
		return nil
	}
	return h.pipeHost.sendSignal(to, room, s)
}

// descriptionsSent counts the descriptions sent through h.
func descriptionsSent(h *pipeHost) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, s := range h.sent {
		if s.Description != nil {
			n++
		}
	}
	return n
}

// TestRemoteCannotMakeUsResendDescriptions: a room member's tiny signals
// must not make a peer send its descriptions again and again. Before, a
// renegotiation request asking for an ICE restart, or any offer that
// collided with ours (the SDP "x" did), sent our whole pending offer again
// each time, and an "offer" holding no more than the origin line of the
// one we answered sent our whole answer again: some 60 bytes bought
// kilobytes, tens of kilobytes with many media sections, so a member
// could spend the victim's signaling byte budget on the server, shared by
// all its peers, and its signals to everyone else were refused
// (rate_limited). Copies now go out at most once per resendMinInterval.
func TestRemoteCannotMakeUsResendDescriptions(t *testing.T) {
	const flood = 100
	var h *dropAnswers
	a, b, _, _ := newTestPairVia(t, func(p *pipeHost) peerHost {
		h = &dropAnswers{pipeHost: p, dropped: make(chan struct{}, 1)}
		return h
	})
	waitStable(t, a)
	waitStable(t, b)

	// a (polite) answered b's offer; offers carrying only that offer's
	// origin line.
	var origin string
	done := make(chan struct{})
	a.enqueue(func() { origin = sdpOrigin(a.pc.CurrentRemoteDescription().SDP); close(done) })
	<-done
	before := descriptionsSent(h.pipeHost)
	for i := range flood {
		a.handleSignal(wireSignal{Description: &proto.SessionDescription{Type: "offer", SDP: origin + "\r\n"}})
		if i%50 == 49 {
			<-afterOps(a) // the loop's queue holds peerOpQueue
		}
	}
	<-afterOps(a)
	if n := descriptionsSent(h.pipeHost) - before; n > flood/10 {
		t.Errorf("%d offers of an origin line alone made a send its answer %d times", flood, n)
	}

	// b (impolite) offers; a's answer is lost, so b's offer stays out.
	h.armed.Store(true)
	offerWithLostAnswer(t, a, b, h.dropped)
	hb := b.host.(*pipeHost)
	before = descriptionsSent(hb)
	for i := range flood {
		if i%2 == 0 {
			b.handleSignal(wireSignal{Renegotiate: &renegotiate{ICERestart: true}})
		} else {
			b.handleSignal(wireSignal{Description: &proto.SessionDescription{Type: "offer", SDP: "x"}})
		}
		if i%50 == 49 {
			<-afterOps(b)
		}
	}
	<-afterOps(b)
	if n := descriptionsSent(hb) - before; n > flood/10 {
		t.Errorf("%d renegotiation requests and colliding offers made b send its offer %d times", flood, n)
	}
}

// TestStalledIncomingTransferEnds: a sender that goes silent after the
// receiver accepted its file (a room member that offers a file and never
// sends it) must not hold the transfer open for ever. Before, its
// Transfer never ended: khadga-peer recv, which waits for each file in
// turn, hung, past its --timeout, and every later offer waited behind
// it. The sender waits at most fileAnswerTimeout for the receiver; the
// receiver now waits as long for the sender.
func TestStalledIncomingTransferEnds(t *testing.T) {
	a, b, ea, eb := newTestPair(t)
	waitEvent[*PeerConnected](t, ea, nil)
	data := randomBytes(t, 1<<20)
	g := &gateReader{r: bytes.NewReader(data), n: 64 << 10, reached: make(chan struct{}), release: make(chan struct{})}
	var release sync.Once
	defer release.Do(func() { close(g.release) })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	st, err := a.sendFile(ctx, "r", "stall.bin", g, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	f := waitEvent[*IncomingFile](t, eb, nil)
	b.opts.fileIdle = 200 * time.Millisecond // before Accept, which reads it
	var got bytes.Buffer
	rt, err := f.Accept(&got)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Wait(ctx); !errors.Is(err, ErrTransferInterrupted) {
		t.Fatalf("the receiver's transfer from a silent sender ended with %v, want ErrTransferInterrupted", err)
	}
	release.Do(func() { close(g.release) }) // the sender's source goes on, too late
	if err := st.Wait(ctx); err == nil {
		t.Fatal("the stalled sender's transfer succeeded")
	}
}

// pausedTransfer starts a 1 MiB transfer from a, under sctx, whose
// source stops after 64 KiB until release is called, then goes on; it
// returns the sender's Transfer and b's offer.
func pausedTransfer(t *testing.T, sctx context.Context, a *peer, ea, eb chan Event) (st *Transfer, f *IncomingFile, g *gateReader, release func()) {
	t.Helper()
	waitEvent[*PeerConnected](t, ea, nil)
	data := randomBytes(t, 1<<20)
	g = &gateReader{r: bytes.NewReader(data), n: 64 << 10, reached: make(chan struct{}), release: make(chan struct{}), resume: true}
	var once sync.Once
	release = func() { once.Do(func() { close(g.release) }) }
	t.Cleanup(release)
	st, err := a.sendFile(sctx, "r", "paused.bin", g, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	return st, waitEvent[*IncomingFile](t, eb, nil), g, release
}

// TestAcceptContextCancels: the context given to AcceptContext bounds
// the transfer, however the sender paces it: when it ends, the receiver's
// Transfer ends (ErrTransferInterrupted and the context's error) and the
// sender is told why.
func TestAcceptContextCancels(t *testing.T) {
	a, _, ea, eb := newTestPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	st, f, g, release := pausedTransfer(t, ctx, a, ea, eb)
	actx, acancel := context.WithCancel(ctx)
	var got bytes.Buffer
	rt, err := f.AcceptContext(actx, &got)
	if err != nil {
		t.Fatal(err)
	}
	<-g.reached // the sender is mid-transfer
	acancel()
	if err := rt.Wait(ctx); !errors.Is(err, ErrTransferInterrupted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("the receiver's cancelled transfer ended with %v", err)
	}
	release()
	if err := st.Wait(ctx); !errors.Is(err, ErrTransferInterrupted) || !strings.Contains(err.Error(), "receiver cancelled") {
		t.Fatalf("the sender's transfer ended with %v, want the receiver's reason", err)
	}
}

// TestSendContextCancelTellsReceiver: a sender whose context ends
// mid-transfer stops sending and tells the receiver why. Before, it
// noticed only while it waited for the channel to drain, so it sent the
// rest of a small file (which the receiver verified), or closed the
// channel without a reason.
func TestSendContextCancelTellsReceiver(t *testing.T) {
	a, _, ea, eb := newTestPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	sctx, scancel := context.WithCancel(ctx)
	st, f, g, release := pausedTransfer(t, sctx, a, ea, eb)
	var got bytes.Buffer
	rt, err := f.Accept(&got)
	if err != nil {
		t.Fatal(err)
	}
	<-g.reached
	scancel()
	release()
	if err := st.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled sender's transfer ended with %v", err)
	}
	if err := rt.Wait(ctx); !errors.Is(err, ErrTransferInterrupted) || !strings.Contains(err.Error(), "sender cancelled") {
		t.Fatalf("the receiver's transfer ended with %v, want the sender's reason", err)
	}
}

// TestRenegotiationRequestsBounded: a polite remote's requests for media
// slots cannot grow our transceivers without end. Each request may ask
// for maxRequestedTransceivers of a kind, and requests that come one
// after another once added as many each time: every transceiver is an
// m-line of every offer, so the offers grew past the server's message
// limit, which closes the socket (and the resume sent the offer again).
func TestRenegotiationRequestsBounded(t *testing.T) {
	a, b, _, _ := newTestPair(t)
	waitStable(t, a)
	waitStable(t, b)
	for range 6 {
		b.handleSignal(wireSignal{Renegotiate: &renegotiate{Video: maxRequestedTransceivers, Audio: maxRequestedTransceivers}})
		<-afterOps(b)
		waitStable(t, b)
	}
	counts := map[webrtc.RTPCodecType]int{}
	done := make(chan struct{})
	b.enqueue(func() {
		for _, tr := range b.pc.GetTransceivers() {
			counts[tr.Kind()]++
		}
		close(done)
	})
	<-done
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if counts[kind] > maxTransceiversPerKind {
			t.Errorf("%d %s transceivers after six requests for %d, want at most %d", counts[kind], kind, maxRequestedTransceivers, maxTransceiversPerKind)
		}
	}
}

// dropRequests loses the renegotiation requests sent through it while
// armed, as a signaling connection that died under them would.
type dropRequests struct {
	*pipeHost
	armed   atomic.Bool
	dropped chan struct{} // gets a value for each request lost
}

func (h *dropRequests) sendSignal(to, room string, s wireSignal) error {
	if s.Renegotiate != nil && h.armed.Load() {
		select {
		case h.dropped <- struct{}{}:
		default:
		}
		return nil
	}
	return h.pipeHost.sendSignal(to, room, s)
}

// TestRequestResentAfterResume: the polite side's request for an ICE
// restart, lost with a signaling connection that died (under a network
// change, the usual case), is sent again after the resume, and the
// impolite side's restart offer follows at once. Before, nothing sent it
// again: the peer connection came back only when the remote's ICE gave up
// (about 5 s), or after requestFallback.
func TestRequestResentAfterResume(t *testing.T) {
	var h *dropRequests
	a, b, _, _ := newTestPairVia(t, func(p *pipeHost) peerHost {
		h = &dropRequests{pipeHost: p, dropped: make(chan struct{}, 1)}
		return h
	})
	waitStable(t, a)
	waitStable(t, b)
	if !a.polite {
		t.Fatal("a is not the polite side")
	}
	hb := b.host.(*pipeHost)
	before := descriptionsSent(hb)
	h.armed.Store(true)
	a.enqueue(func() { a.negotiate(true) })
	select {
	case <-h.dropped:
	case <-time.After(testTimeout):
		t.Fatal("a asked for no restart")
	}
	h.armed.Store(false)
	a.updateICEServers(webrtc.Configuration{}) // as after a resume
	deadline := time.Now().Add(requestFallback / 2)
	for descriptionsSent(hb) == before {
		if time.Now().After(deadline) {
			t.Fatalf("b sent no offer within %v of the resume", requestFallback/2)
		}
		<-afterOps(b)
		time.Sleep(5 * time.Millisecond) // polling a count, not synchronising
	}
	waitStable(t, a)
}

// TestSendCancelReasonOutlivesSender: a sender whose context ends
// mid-transfer, and whose program closes the connection as soon as the
// Transfer ends (khadga-peer send at Ctrl-C or at its --timeout), still
// tells the receiver why. The reason goes out behind the data already
// queued (up to fileHighWater); the Transfer used to end as soon as it
// was queued, so the receiver saw only an interrupted transfer.
func TestSendCancelReasonOutlivesSender(t *testing.T) {
	a, _, ea, eb := newTestPair(t)
	waitEvent[*PeerConnected](t, ea, nil)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	sctx, scancel := context.WithCancel(ctx)
	st, err := a.sendFile(sctx, "r", "big.bin", &countingZeros{}, 256<<20)
	if err != nil {
		t.Fatal(err)
	}
	w := &markWriter{reached: make(chan struct{})}
	w.n.Store(1 << 20)
	rt, err := waitEvent[*IncomingFile](t, eb, nil).Accept(w)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.reached: // the sender's queue is full by now
	case <-ctx.Done():
		t.Fatal("the receiver never took its first MiB")
	}
	scancel()
	if err := st.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled sender's transfer ended with %v", err)
	}
	a.close() // as a program that exits at once does
	if err := rt.Wait(ctx); !errors.Is(err, ErrTransferInterrupted) || !strings.Contains(err.Error(), "sender cancelled") {
		t.Fatalf("the receiver's transfer ended with %v, want the sender's reason", err)
	}
}

// markWriter takes everything and closes reached once it took n bytes.
type markWriter struct {
	n       atomic.Int64
	reached chan struct{}
	once    sync.Once
}

func (w *markWriter) Write(p []byte) (int, error) {
	if w.n.Add(-int64(len(p))) <= 0 {
		w.once.Do(func() { close(w.reached) })
	}
	return len(p), nil
}
