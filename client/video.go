package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/ivfwriter"

	"github.com/khadga/khadga/proto"
)

// VideoSource produces encoded video frames. NextSample returns io.EOF when
// the source has no more frames. client/media has a VP8 test pattern.
//
// A sample's Timestamp, if set, is when it was captured, on the wall
// clock (time.Now's): the publication's RTCP sender reports give that
// time for it, so a receiver lines up a peer's audio and video by their
// sources' clocks. A sample with no Timestamp is reported at its place on
// the publication's schedule, which starts when the first sample is
// returned: later than its capture by however long that took.
type VideoSource interface {
	// MimeType is the codec, for example webrtc.MimeTypeVP8.
	MimeType() string
	// NextSample returns the next encoded frame and its duration. It
	// returns soon after ctx is done: Publication.Close, Room.Leave and
	// Client.Close wait for it.
	NextSample(ctx context.Context) (media.Sample, error)
}

// KeyframeRequester is implemented by sources that can encode a key frame
// on demand; a Publication calls it when a receiver reports picture loss.
type KeyframeRequester interface{ RequestKeyframe() }

// ErrRecorderConsent: the peer is a recorder and the user did not consent
// to send it media (see ConsentToRecording).
var ErrRecorderConsent = errors.New("peer is a recorder: sending media to it needs the user's consent")

// SendOption changes one Publication.SendTo.
type SendOption func(*sendOptions)

type sendOptions struct{ recorderOK bool }

// ConsentToRecording records that the user agreed to send this media to a
// recorder peer. Without it, SendTo refuses peers with the recorder role.
func ConsentToRecording() SendOption { return func(o *sendOptions) { o.recorderOK = true } }

// Publication is a video track published in a room. It goes only to the
// peers named in SendTo: publishing sends nothing by itself.
type Publication struct {
	room  *Room
	src   VideoSource
	track *countingTrack
	log   *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	frames atomic.Int64
	// clock is the current sample's place on the pump's schedule, which
	// the senders' RTCP reports give as its capture time (senderreport.go).
	clock captureClock

	mu      sync.Mutex
	targets map[string]*target
	// keyframes spaces the key frames receivers' picture-loss reports
	// ask the source for (readRTCP).
	keyframes keyframeGate
}

// minKeyframeInterval is the least time between two key frames that
// receivers' reports ask a source for. A report that comes sooner is
// served by the key frame already on its way. Without it, one receiver
// that sent picture-loss reports without end (a hostile room member)
// would make every frame a key frame, several times the bitrate, for
// every receiver of the publication. libwebrtc spaces them alike.
const minKeyframeInterval = 300 * time.Millisecond

// keyframeGate lets a key frame request through at most once every
// minKeyframeInterval. Safe for concurrent use (one reader per sender).
type keyframeGate struct {
	mu   sync.Mutex
	last time.Time
}

// allow reports whether a request at now goes to the source.
func (g *keyframeGate) allow(now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.last.IsZero() && now.Sub(g.last) < minKeyframeInterval {
		return false
	}
	g.last = now
	return true
}

type target struct {
	p      *peer
	sender *webrtc.RTPSender
	// consent: the peer is a recorder, and the user consented (SendTo
	// with ConsentToRecording); the recorder was told (consent.go).
	consent bool
}

// countingTrack counts bindings, so the publication reads its source only
// while at least one peer receives it.
type countingTrack struct {
	*webrtc.TrackLocalStaticSample
	bound atomic.Int32
}

func (t *countingTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	p, err := t.TrackLocalStaticSample.Bind(ctx)
	if err == nil {
		t.bound.Add(1)
	}
	return p, err
}

func (t *countingTrack) Unbind(ctx webrtc.TrackLocalContext) error {
	t.bound.Add(-1)
	return t.TrackLocalStaticSample.Unbind(ctx)
}

// PublishVideo starts a video publication in the room. Frames are pulled
// from src, paced by their durations, only while at least one chosen peer
// is connected and receiving: a finite source (a file, the test pattern)
// is not wasted on nobody.
func (r *Room) PublishVideo(src VideoSource) (*Publication, error) {
	return r.publish(src, webrtc.RTPCodecCapability{MimeType: src.MimeType()}, "video")
}

// publish starts a publication of src as a track with id kind in the
// room's stream, so that the receiver knows the room and that the room's
// audio and video go together.
func (r *Room) publish(src VideoSource, capability webrtc.RTPCodecCapability, kind string) (*Publication, error) {
	tr, err := webrtc.NewTrackLocalStaticSample(capability, kind, r.name)
	if err != nil {
		return nil, fmt.Errorf("new track: %w", err)
	}
	ctx, cancel := context.WithCancel(r.c.ctx)
	pub := &Publication{
		room: r, src: src, track: &countingTrack{TrackLocalStaticSample: tr},
		log: r.c.log.With(slog.String("room", r.name), slog.String("track", kind)),
		ctx: ctx, cancel: cancel, done: make(chan struct{}), targets: map[string]*target{},
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		cancel()
		return nil, ErrNotInRoom
	}
	r.pubs = append(r.pubs, pub)
	r.mu.Unlock()
	go pub.pump()
	return pub, nil
}

// SendTo starts sending the publication to one member, which triggers a
// renegotiation with it. A recorder is refused unless ConsentToRecording is
// given; a member whose role is not yet known is refused the same way.
func (pub *Publication) SendTo(peerID string, opts ...SendOption) error {
	var so sendOptions
	for _, f := range opts {
		f(&so)
	}
	p, err := pub.room.peer(peerID)
	if err != nil {
		return err
	}
	if role := p.Member().Role; (role == proto.RoleRecorder || role == "") && !so.recorderOK {
		return fmt.Errorf("peer %s: %w", peerID, ErrRecorderConsent)
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if t := pub.targets[peerID]; t != nil && t.p == p {
		return nil
	}
	if err := pub.attachLocked(p); err != nil {
		return err
	}
	if p.Member().Role == proto.RoleRecorder {
		// Consent is granted now; the recorder records from now on.
		pub.targets[peerID].consent = true
		p.sendConsent(pub.room.name, true)
	}
	return nil
}

func (pub *Publication) attachLocked(p *peer) error {
	if pub.ctx.Err() != nil {
		return ErrClosed
	}
	sender, err := p.pc.AddTrack(pub.track)
	if err != nil {
		return fmt.Errorf("peer %s: add track: %w", p.id, err)
	}
	consent := false
	if old := pub.targets[p.id]; old != nil {
		consent = old.consent
		pub.room.c.reports.untrack(old.sender)
	}
	pub.room.c.reports.track(sender, &pub.clock)
	pub.targets[p.id] = &target{p: p, sender: sender, consent: consent}
	go pub.readRTCP(sender)
	return nil
}

// reattach adds the publication again to a peer object that replaced an
// old one for the same member (after a session that could not resume).
func (r *Room) reattach(p *peer) {
	for _, pub := range r.publications() {
		pub.mu.Lock()
		if t := pub.targets[p.id]; t != nil && t.p != p {
			if err := pub.attachLocked(p); err != nil {
				pub.log.Warn("re-send to peer", slog.String("peer", p.id), slog.Any("err", err))
			} else if t.consent {
				p.sendConsent(r.name, true) // the new peer object knows nothing yet
			}
		}
		pub.mu.Unlock()
	}
}

func (r *Room) publications() []*Publication {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Publication(nil), r.pubs...)
}

// StopSending stops sending to one member.
func (pub *Publication) StopSending(peerID string) error {
	pub.mu.Lock()
	t := pub.targets[peerID]
	delete(pub.targets, peerID)
	pub.mu.Unlock()
	if t == nil {
		return nil
	}
	pub.room.c.reports.untrack(t.sender)
	if t.consent && !pub.room.consentsTo(peerID) {
		t.p.sendConsent(pub.room.name, false) // nothing of this room goes to it now
	}
	if err := t.p.pc.RemoveTrack(t.sender); err != nil && !errors.Is(err, webrtc.ErrConnectionClosed) {
		return fmt.Errorf("peer %s: remove track: %w", peerID, err)
	}
	return nil
}

// Targets lists the peers the publication is sent to.
func (pub *Publication) Targets() []string {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	ids := make([]string, 0, len(pub.targets))
	for id := range pub.targets {
		ids = append(ids, id)
	}
	return ids
}

// Frames counts frames written to the track.
func (pub *Publication) Frames() int64 { return pub.frames.Load() }

// Done is closed when the source ends or the publication is closed; its
// track has then been removed from every peer.
func (pub *Publication) Done() <-chan struct{} { return pub.done }

// Err is why the publication ended: nil when the source reached its end.
func (pub *Publication) Err() error {
	select {
	case <-pub.done:
		return pub.err
	default:
		return nil
	}
}

// Close stops the publication and removes its track from every peer.
func (pub *Publication) Close() error {
	pub.cancel()
	<-pub.done
	return nil
}

// stopAll removes the track from every peer, each of which renegotiates:
// the remote's track ends (its reads return io.EOF) rather than freezing
// on the last frame.
func (pub *Publication) stopAll() {
	for _, id := range pub.Targets() {
		if err := pub.StopSending(id); err != nil {
			pub.log.Debug("stop sending", slog.Any("err", err))
		}
	}
}

// readRTCP drains a sender's RTCP (interceptors need it read) and passes
// picture-loss reports to the source.
func (pub *Publication) readRTCP(s *webrtc.RTPSender) {
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		kr, ok := pub.src.(KeyframeRequester)
		if !ok {
			continue
		}
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				if pub.keyframes.allow(time.Now()) {
					kr.RequestKeyframe()
				}
			}
		}
	}
}

// ready reports whether some chosen peer is connected and bound.
func (pub *Publication) ready() bool {
	if pub.track.bound.Load() <= 0 {
		return false
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	for _, t := range pub.targets {
		if t.p.pc.ConnectionState() == webrtc.PeerConnectionStateConnected {
			return true
		}
	}
	return false
}

// readyPoll is how often a paused publication checks for a receiver.
const readyPoll = 20 * time.Millisecond

// pump feeds the track from the source until the source ends (io.EOF),
// fails, or the publication is closed. Whichever it is, the track then
// leaves every peer, as Close removes it: a source that ended (a file
// played to its end, a camera unplugged) would otherwise leave the
// remotes a track frozen on its last frame until someone called Close.
func (pub *Publication) pump() {
	defer close(pub.done)
	pub.err = pub.run()
	if pub.err != nil && pub.ctx.Err() == nil {
		pub.log.Warn("media source failed; the track is removed", slog.Any("err", pub.err))
	}
	pub.cancel() // an ended publication takes no new peers (ErrClosed)
	pub.stopAll()
}

// run writes the source's samples to the track, paced by their
// durations, while some chosen peer receives it. It returns nil when the
// source reached its end.
func (pub *Publication) run() error {
	var next time.Time
	for {
		if !pub.ready() {
			next = time.Time{}
			if err := pub.wait(readyPoll); err != nil {
				return err
			}
			continue
		}
		s, err := pub.src.NextSample(pub.ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("media source: %w", err)
		}
		if next.IsZero() {
			next = time.Now() // the schedule starts with the first sample made
		}
		pub.clock.set(captureTime(s, next))
		if err := pub.track.WriteSample(s); err != nil {
			pub.log.Debug("write sample", slog.Any("err", err))
		}
		pub.frames.Add(1)
		next = next.Add(s.Duration)
		if err := pub.wait(time.Until(next)); err != nil {
			return err
		}
	}
}

// captureTime is when sample s was captured, for the sender reports: its
// Timestamp if the source set one, else next, its place on the schedule.
// The schedule starts when the first sample is returned, so a source slow
// to return it (a first encode, a preempted goroutine) would otherwise be
// reported late by as much for the whole publication, and a receiver would
// put its audio that far off its video.
func captureTime(s media.Sample, next time.Time) time.Time {
	if !s.Timestamp.IsZero() {
		return s.Timestamp
	}
	return next
}

func (pub *Publication) wait(d time.Duration) error {
	if d <= 0 {
		return pub.ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-pub.ctx.Done():
		return pub.ctx.Err()
	case <-t.C:
		return nil
	}
}

// WriteIVF writes a remote VP8 (or VP9, AV1) track to w as IVF until the
// track ends, ctx is done, or maxFrames frames were written (0: no limit).
// It returns the number of frames written; a frame is counted when its last
// packet (RTP marker bit) arrives. If w is an io.WriteSeeker the header's
// frame count is filled in at the end. WriteIVF does not close w.
func WriteIVF(ctx context.Context, track *webrtc.TrackRemote, w io.Writer, maxFrames int) (int, error) {
	// Hide Close from ivfwriter, which would close w.
	var out io.Writer = struct{ io.Writer }{w}
	if ws, ok := w.(io.WriteSeeker); ok {
		out = struct{ io.WriteSeeker }{ws}
	}
	iw, err := ivfwriter.NewWith(out, ivfwriter.WithCodec(track.Codec().MimeType))
	if err != nil {
		return 0, fmt.Errorf("ivf writer: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = track.SetReadDeadline(time.Now()) })
	defer stop()
	frames := 0
	for maxFrames <= 0 || frames < maxFrames {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				break
			}
			_ = iw.Close()
			return frames, fmt.Errorf("read track: %w", err)
		}
		if err := iw.WriteRTP(pkt); err != nil {
			_ = iw.Close()
			return frames, fmt.Errorf("write ivf: %w", err)
		}
		if pkt.Marker {
			frames++
		}
	}
	if err := iw.Close(); err != nil {
		return frames, fmt.Errorf("close ivf: %w", err)
	}
	return frames, nil
}
