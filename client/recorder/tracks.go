package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

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
	mu    sync.Mutex
	info  TrackInfo
	video *Pipeline
	audio *audioTrack
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
	log := rr.log.With(slog.String("peer", e.From.Peer), slog.String("user", e.From.User), slog.String("codec", codec))
	video := tr.Kind() == webrtc.RTPCodecTypeVideo
	switch {
	case video && !slicesContainsFold(Codecs(), codec):
		log.Warn("ignoring a track in a codec this build cannot decode")
		return
	case !video && (!r.audio() || !strings.EqualFold(codec, opus.MimeType)):
		log.Info("ignoring an audio track", slog.Bool("audio_on", r.audio()))
		return
	}
	peer := rr.name + "/" + e.From.Peer
	key := peer + "/" + tr.ID() + "/" + fmt.Sprint(tr.SSRC())
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		lt, p := r.admit(ctx, rr, e, key, peer, log)
		if lt != nil {
			r.record(ctx, rr, e, lt, p, key, peer, video, log)
		}
	}()
}

// maxTracksPerPeer is one peer's share of Config.MaxTracks: a peer sends
// a video and an audio track, and one peer must not take every slot.
func (r *Recorder) maxTracksPerPeer() int { return max(1, min(4, r.cfg.MaxTracks/2)) }

// admit takes a slot for the track, waiting while there is none: the
// track is read and its packets dropped meanwhile, and a slot that frees
// (another track ended) is tried again, so that a peer who arrives while
// the slots are full is recorded once one frees. It returns nil when the
// track ended, or ctx was done, first.
func (r *Recorder) admit(ctx context.Context, rr *roomRec, e *client.IncomingTrack, key, peer string, log *slog.Logger) (*liveTrack, *peerRec) {
	warned := false
	for {
		r.mu.Lock()
		if len(r.live) < r.cfg.MaxTracks && r.per[peer] < r.maxTracksPerPeer() {
			p := rr.hold(e.From)
			if p == nil {
				r.mu.Unlock()
				return nil, nil
			}
			lt := &liveTrack{}
			r.live[key] = lt
			r.per[peer]++
			r.mu.Unlock()
			if warned {
				_ = e.Track.SetReadDeadline(time.Time{})
				e.RequestKeyframe()
			}
			return lt, p
		}
		freed := r.freed
		r.mu.Unlock()
		if !warned {
			warned = true
			log.Warn("a track waits for a slot: too many tracks", slog.Int("max", r.cfg.MaxTracks), slog.Int("max_per_peer", r.maxTracksPerPeer()))
		}
		if !drainUntil(ctx, e.Track, freed) {
			return nil, nil
		}
	}
}

// drainUntil reads and drops the track's packets until freed is closed
// (true), or the track ends or ctx is done (false).
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

// record handles an admitted track until it ends.
func (r *Recorder) record(ctx context.Context, rr *roomRec, e *client.IncomingTrack, lt *liveTrack, p *peerRec, key, peer string, video bool, log *slog.Logger) {
	tr := e.Track
	codec := tr.Codec().MimeType
	log.Info("track arrived; recording it while its peer consents", slog.String("track", tr.ID()), slog.String("kind", tr.Kind().String()))
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		stop := context.AfterFunc(ctx, func() { e.Receiver.SetReadDeadline(time.Now()) })
		defer stop()
		readReports(func() ([]rtcp.Packet, error) { pkts, _, err := e.Receiver.ReadRTCP(); return pkts, err }, p.sync, video)
	}()
	go func() {
		defer r.wg.Done()
		defer func() {
			r.release(key, peer)
			rr.release(p)
		}()
		info := TrackInfo{Peer: e.From.Peer, User: e.From.User, Track: tr.ID(), Codec: canonicalCodec(codec)}
		if video {
			r.recordVideo(ctx, rr, p, lt, info, e, log)
		} else {
			r.recordAudio(ctx, p, lt, info, e, log)
		}
	}()
}

// consented runs record for each stretch of the peer's consent, until the
// track ends or ctx is done.
func consented(ctx context.Context, p *peerRec, src RTPReader, log *slog.Logger, record func(g *consentReader, at time.Time) error) {
	g := &consentReader{src: src, c: &p.consent}
	stop := context.AfterFunc(ctx, func() { g.SetReadDeadline(time.Now()) })
	defer stop()
	for {
		at, err := g.await()
		if err != nil {
			if g.dropped > 0 {
				log.Info("track ended before its peer consented; nothing recorded", slog.Int64("packets_dropped", g.dropped))
			}
			return
		}
		err = record(g, at)
		if !errors.Is(err, errConsentWithdrawn) {
			if err != nil {
				log.Warn("recording failed", "err", err)
			}
			return
		}
		log.Info("consent withdrawn; the clip is finished")
	}
}

func (r *Recorder) recordVideo(ctx context.Context, rr *roomRec, p *peerRec, lt *liveTrack, info TrackInfo, e *client.IncomingTrack, log *slog.Logger) {
	opts := TrackOptions{FPS: r.cfg.FPS, Fit: r.cfg.Fit, QueueFrames: r.cfg.QueueFrames, Logger: log,
		RequestKeyframe: e.RequestKeyframe, av: p.sync}
	if r.audio() {
		opts.audio = p.audio
	}
	consented(ctx, p, e.Track, log, func(g *consentReader, at time.Time) error {
		info.Consent = at
		pl, err := NewPipeline(rr.out, info, opts)
		if err != nil {
			return err
		}
		lt.set(info, pl, nil)
		err = pl.ReadRTP(ctx, g)
		st, cerr := pl.Close()
		lt.set(info, nil, nil)
		r.finished(TrackReport{Info: info, Stats: st})
		log.Info("track ended", slog.Any("stats", st), slog.Any("err", cerr))
		return err
	})
}

func (r *Recorder) recordAudio(ctx context.Context, p *peerRec, lt *liveTrack, info TrackInfo, e *client.IncomingTrack, log *slog.Logger) {
	consented(ctx, p, e.Track, log, func(g *consentReader, at time.Time) error {
		info.Consent = at
		at2, err := newAudioTrack(p.audio, log)
		if err != nil {
			return err
		}
		defer at2.close()
		lt.set(info, nil, at2)
		err = at2.readRTP(ctx, g)
		st := at2.stats()
		lt.set(info, nil, nil)
		r.finished(TrackReport{Info: info, Audio: &st})
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

func slicesContainsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}
