package recorder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/client/media/opus"
)

// audio reports whether the recorder records audio: it was not turned
// off, and this build has libopus.
func (r *Recorder) audio() bool { return !r.cfg.NoAudio && opus.Available() }

// liveTrack is a track being handled: waiting for consent, or recorded
// by a pipeline (video) or an audioTrack.
type liveTrack struct {
	mu     sync.Mutex
	info   TrackInfo
	video  *Pipeline
	audio  *audioTrack
	budget *trackBudget // over every stretch of consent; nil with no budget
}

func (t *liveTrack) set(info TrackInfo, video *Pipeline, audio *audioTrack) {
	t.mu.Lock()
	t.info, t.video, t.audio = info, video, audio
	t.mu.Unlock()
}

// report is the live track's report, if something records it now.
func (t *liveTrack) report() (TrackReport, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.video != nil:
		return TrackReport{Info: t.info, Stats: t.video.Stats()}, true
	case t.audio != nil:
		st := t.audio.stats()
		return TrackReport{Info: t.info, Audio: &st}, true
	}
	return TrackReport{}, false
}

// track starts handling an incoming track in its own goroutine: video in
// a codec this build decodes, and Opus audio unless audio is off.
func (r *Recorder) track(ctx context.Context, rr *roomRec, e *client.IncomingTrack) {
	tr := e.Track
	codec := tr.Codec().MimeType
	log := rr.log.With(slog.String("peer", e.From.Peer), slog.String("user", e.From.User), slog.String("track", tr.ID()), slog.String("codec", codec))
	video := tr.Kind() == webrtc.RTPCodecTypeVideo
	switch {
	case video && !slicesContainsFold(Codecs(), codec):
		log.Warn("ignoring a track in a codec this build cannot decode")
		r.discard(ctx, e, true, log)
		return
	case !video && (!r.audio() || !strings.EqualFold(codec, opus.MimeType)):
		log.Info("ignoring an audio track", slog.Bool("audio_on", r.audio()))
		r.discard(ctx, e, true, log)
		return
	}
	peer := rr.name + "/" + e.From.Peer
	key := peer + "/" + tr.ID() + "/" + fmt.Sprint(tr.SSRC())
	info := TrackInfo{Peer: e.From.Peer, User: e.From.User, Track: tr.ID(), Codec: canonicalCodec(codec)}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.handle(ctx, rr, e, info, key, peer, video, log)
	}()
}

// handle records the track while it holds a slot, until it ends. A track
// that went idle gives up its slot; when it sends again (a source that
// paused, a camera turned back on) it is admitted again, as a new track
// would be, and recorded from its next key frame.
func (r *Recorder) handle(ctx context.Context, rr *roomRec, e *client.IncomingTrack, info TrackInfo, key, peer string, video bool, log *slog.Logger) {
	reports := false
	for {
		lt, p := r.admit(ctx, rr, e, info, key, peer, log)
		if lt == nil {
			r.discard(ctx, e, !reports, log) // refused (or ended)
			return
		}
		if !reports {
			reports = true
			r.readReports(ctx, e, p, video)
		}
		if !errors.Is(r.record(ctx, rr, e, lt, p, info, key, peer, video, log), errIdle) {
			r.discard(ctx, e, false, log) // ended, or recording failed
			return
		}
		if !awaitPacket(ctx, e.Track) {
			return
		}
		log.Info("the idle track sends again; recording it again once it has a slot")
		e.RequestKeyframe()
	}
}

// discardBuffer is the size of discard's buffers: one packet. A larger
// packet is dropped all the same (io.ErrShortBuffer).
const discardBuffer = 1500

// discard reads and drops what a track the recorder does not record
// sends, its RTP and, if rtcp (nobody reads it yet), its RTCP, until the
// track ends or ctx is done, in goroutines of their own. A track left
// unread is not free: pion keeps up to 1 MB of its packets (and 100 KB of
// its RTCP), for each of up to 64 tracks a peer may open, for as long as
// the peer stays. Stopping its RTPReceiver does not help while the peer
// goes on sending: pion/srtp opens a new stream for the next packet of
// the same SSRC and buffers it just the same, unread. Setting the
// transceiver inactive would stop the sender, but needs a renegotiation
// that pion does not start by itself, and the next offer of the peer
// makes it receive again.
func (r *Recorder) discard(ctx context.Context, e *client.IncomingTrack, rtcp bool, log *slog.Logger) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if n := drain(ctx, e.Track); n > 0 { // a recorded track that ended has none left
			log.Info("a track not recorded ended; its packets were read and dropped", slog.Int64("packets", n))
		}
	}()
	if rtcp {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			drain(ctx, e.Receiver)
		}()
	}
}

// packetReader is a track, or a receiver (its RTCP), read whole
// packets at a time.
type packetReader interface {
	Read([]byte) (int, interceptor.Attributes, error)
	SetReadDeadline(time.Time) error
}

// drain reads and drops from rd until it ends or ctx is done, and returns
// how many packets it read.
func drain(ctx context.Context, rd packetReader) int64 {
	_ = rd.SetReadDeadline(time.Time{}) // an idle reader's may have passed
	stop := context.AfterFunc(ctx, func() { _ = rd.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, discardBuffer)
	var n int64
	for {
		_, _, err := rd.Read(buf)
		if err != nil && !errors.Is(err, io.ErrShortBuffer) {
			return n
		}
		n++
	}
}

// readReports reads the track's RTCP for its sender reports (A/V sync)
// until the track ends or ctx is done, in a goroutine of its own.
func (r *Recorder) readReports(ctx context.Context, e *client.IncomingTrack, p *peerRec, video bool) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		stop := context.AfterFunc(ctx, func() { e.Receiver.SetReadDeadline(time.Now()) })
		defer stop()
		readReports(func() ([]rtcp.Packet, error) { pkts, _, err := e.Receiver.ReadRTCP(); return pkts, err }, p.sync, video)
	}()
}

// awaitPacket waits for the track's next packet, which it drops, and
// reports whether one came (false: the track ended, or ctx is done).
func awaitPacket(ctx context.Context, tr *webrtc.TrackRemote) bool {
	_ = tr.SetReadDeadline(time.Time{}) // the idle reader's has passed
	stop := context.AfterFunc(ctx, func() { _ = tr.SetReadDeadline(time.Now()) })
	defer stop()
	_, _, err := tr.ReadRTP()
	return err == nil && ctx.Err() == nil
}

// maxTracksPerPeer is one peer's share of Config.MaxTracks: a peer sends
// a video and an audio track, and one peer must not take every slot.
func (r *Recorder) maxTracksPerPeer() int { return max(1, min(4, r.cfg.MaxTracks/2)) }

// admit takes a slot for the track, waiting while there is none: the
// track is read and its packets dropped meanwhile, and a slot that frees
// (another track ended) is tried again, so that a peer who arrives while
// the slots are full is recorded once one frees. At most MaxWaiting
// tracks wait, and at most a peer's share of the slots of each peer: a
// track past them is refused, left unread (as a track in a codec the
// recorder does not decode is) and reported. It returns nil when the
// track was refused, or ended, or ctx was done, first.
func (r *Recorder) admit(ctx context.Context, rr *roomRec, e *client.IncomingTrack, info TrackInfo, key, peer string, log *slog.Logger) (*liveTrack, *peerRec) {
	waiting := false
	defer func() {
		if waiting {
			r.mu.Lock()
			r.waiting--
			if r.waitingPer[peer]--; r.waitingPer[peer] <= 0 {
				delete(r.waitingPer, peer)
			}
			r.mu.Unlock()
		}
	}()
	for {
		r.mu.Lock()
		if len(r.live) < r.cfg.MaxTracks && r.per[peer] < r.maxTracksPerPeer() {
			p := rr.hold(e.From)
			if p == nil {
				r.mu.Unlock()
				return nil, nil
			}
			lt := &liveTrack{}
			if r.cfg.CPUBudget > 0 {
				now := time.Now()
				lt.budget = &trackBudget{track: newCPUMeter(r.cfg.CPUBudget, r.cfg.BudgetWindow, now),
					peer: rr.meter(p, r.cfg.CPUBudget*peerBudgetTracks, r.cfg.BudgetWindow, now)}
			}
			r.live[key] = lt
			r.per[peer]++
			r.mu.Unlock()
			if waiting {
				_ = e.Track.SetReadDeadline(time.Time{})
				e.RequestKeyframe()
			}
			return lt, p
		}
		if !waiting && (r.waiting >= r.cfg.MaxWaiting || r.waitingPer[peer] >= r.maxTracksPerPeer()) {
			r.mu.Unlock()
			// Reported before it is logged: whoever reads the log finds the report.
			r.finished(TrackReport{Info: info, Stopped: StopTooManyWaiting})
			log.Warn("track refused: no slot is free, and the tracks waiting for one are at their limit", slog.Int("max_waiting", r.cfg.MaxWaiting),
				slog.Int("max_waiting_per_peer", r.maxTracksPerPeer()))
			return nil, nil
		}
		if !waiting {
			waiting = true
			r.waiting++
			r.waitingPer[peer]++
			log.Warn("a track waits for a slot: too many tracks", slog.Int("max", r.cfg.MaxTracks), slog.Int("max_per_peer", r.maxTracksPerPeer()))
		}
		freed := r.freed
		r.mu.Unlock()
		if !drainUntil(ctx, e.Track, freed) {
			return nil, nil
		}
	}
}

// drainUntil reads and drops the track's packets until freed is closed
// (true), or the track ends or ctx is done (false). A nil freed never is.
func drainUntil(ctx context.Context, tr *webrtc.TrackRemote, freed <-chan struct{}) bool {
	for {
		select {
		case <-freed:
			return true
		case <-ctx.Done():
			return false
		default:
		}
		_ = tr.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, _, err := tr.ReadRTP(); err != nil {
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				return false
			}
		}
	}
}

// release gives back a track's slot.
func (r *Recorder) release(key, peer string) {
	r.mu.Lock()
	delete(r.live, key)
	if r.per[peer]--; r.per[peer] <= 0 {
		delete(r.per, peer)
	}
	close(r.freed)
	r.freed = make(chan struct{})
	r.mu.Unlock()
}

// record handles an admitted track until it ends, goes idle (errIdle)
// or ctx is done, and gives its slot back; it returns why it stopped.
func (r *Recorder) record(ctx context.Context, rr *roomRec, e *client.IncomingTrack, lt *liveTrack, p *peerRec, info TrackInfo, key, peer string, video bool, log *slog.Logger) error {
	tr := e.Track
	log.Info("track arrived; recording it while its peer consents", slog.String("track", tr.ID()), slog.String("kind", tr.Kind().String()))
	defer func() {
		r.release(key, peer)
		rr.release(p)
	}()
	var err error
	src := newIdleReader(tr, r.cfg.IdleTimeout)
	if video {
		err = r.recordVideo(ctx, rr, p, lt, info, e, src, log)
	} else {
		err = r.recordAudio(ctx, p, lt, info, src, log)
	}
	if errors.Is(err, errIdle) {
		log.Info("track ended for the recorder: it sent nothing for the idle timeout; its slot is free",
			slog.Duration("idle_timeout", r.cfg.IdleTimeout))
	}
	if errors.Is(err, errOverBudget) {
		// The track keeps its slot until it ends: its peer cannot trade
		// it for a new track with a fresh budget at once.
		log.Warn("track stopped: decoding it took more CPU time than its budget; its packets are dropped until it ends",
			slog.String("over", lt.budget.overWhat()), slog.Duration("cpu", lt.budget.cpu()),
			slog.Float64("budget_cores", r.cfg.CPUBudget), slog.Float64("peer_budget_cores", r.cfg.CPUBudget*peerBudgetTracks),
			slog.Duration("window", r.cfg.BudgetWindow))
		drainUntil(ctx, tr, nil)
	}
	return err
}

// consented runs record for each stretch of the peer's consent, until the
// track ends or ctx is done, or record fails; it returns that failure.
func consented(ctx context.Context, p *peerRec, src RTPReader, log *slog.Logger, record func(g *consentReader, at time.Time) error) error {
	g := &consentReader{src: src, c: &p.consent}
	stop := context.AfterFunc(ctx, func() { g.SetReadDeadline(time.Now()) })
	defer stop()
	for {
		at, err := g.await()
		if errors.Is(err, errIdle) {
			return err // admitted again if it sends again
		}
		if err != nil {
			if g.dropped > 0 {
				log.Info("track ended before its peer consented; nothing recorded", slog.Int64("packets_dropped", g.dropped))
			}
			return nil
		}
		err = record(g, at)
		if !errors.Is(err, errConsentWithdrawn) {
			if err != nil && !errors.Is(err, errOverBudget) && !errors.Is(err, errIdle) {
				log.Warn("recording failed", "err", err)
			}
			return err
		}
		log.Info("consent withdrawn; the clip is finished")
	}
}

func (r *Recorder) recordVideo(ctx context.Context, rr *roomRec, p *peerRec, lt *liveTrack, info TrackInfo, e *client.IncomingTrack, src RTPReader, log *slog.Logger) error {
	opts := TrackOptions{FPS: r.cfg.FPS, Fit: r.cfg.Fit, QueueFrames: r.cfg.QueueFrames, Logger: log,
		RequestKeyframe: e.RequestKeyframe, av: p.sync, budget: lt.budget}
	if r.audio() {
		opts.audio = p.audio
	}
	return consented(ctx, p, src, log, func(g *consentReader, at time.Time) error {
		info.Consent = at
		pl, err := NewPipeline(rr.out, info, opts)
		if err != nil {
			return err
		}
		lt.set(info, pl, nil)
		err = pl.ReadRTP(ctx, g)
		st, cerr := pl.Close()
		lt.set(info, nil, nil)
		r.finished(TrackReport{Info: info, Stats: st, Stopped: stopReason(err)})
		log.Info("track ended", slog.Any("stats", st), slog.Any("err", cerr))
		return err
	})
}

func (r *Recorder) recordAudio(ctx context.Context, p *peerRec, lt *liveTrack, info TrackInfo, src RTPReader, log *slog.Logger) error {
	return consented(ctx, p, src, log, func(g *consentReader, at time.Time) error {
		info.Consent = at
		at2, err := newAudioTrack(p.audio, lt.budget, log)
		if err != nil {
			return err
		}
		defer at2.close()
		lt.set(info, nil, at2)
		err = at2.readRTP(ctx, g)
		st := at2.stats()
		lt.set(info, nil, nil)
		r.finished(TrackReport{Info: info, Audio: &st, Stopped: stopReason(err)})
		log.Info("audio track ended", slog.Any("stats", st))
		return err
	})
}

// maxReports bounds the finished tracks' reports a Recorder keeps: a
// peer that adds and removes tracks, or withdraws and grants consent,
// makes one each time, for as long as the recorder runs.
const maxReports = 1024

func (r *Recorder) finished(rep TrackReport) {
	r.mu.Lock()
	if len(r.done) >= maxReports {
		r.done = append(r.done[:0], r.done[len(r.done)-maxReports/2:]...)
	}
	r.done = append(r.done, rep)
	r.mu.Unlock()
}

// stopReason is TrackReport.Stopped for the error that ended a stretch
// of recording.
func stopReason(err error) string {
	switch {
	case errors.Is(err, errOverBudget):
		return StopCPUBudget
	case errors.Is(err, errIdle):
		return StopIdle
	}
	return ""
}

func slicesContainsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}
