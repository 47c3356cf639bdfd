package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/proto"
)

// Config configures a Recorder.
type Config struct {
	// Server is the khadga server's base URL, for example https://khadga.example.
	Server string
	// Token is an access token with the recorder role (from `khadga token`).
	Token string
	Room  string
	// Out is the output directory.
	Out string
	// FPS is the sampling rate (default 5); negative keeps every frame.
	FPS        float64
	Size       Size // default 224x224
	Fit        Fit
	ClipFrames int // default 150
	Format     Format
	Checksum   Checksum // of each shard, in the manifest (default CRC-32)
	// QueueFrames bounds each track's write queue (default 64).
	QueueFrames int
	// MaxTracks caps the tracks recorded at once (default 16); more are ignored.
	MaxTracks int
	// NoSync skips fsync (see OutputConfig.NoSync).
	NoSync bool
	Logger *slog.Logger
	// ClientOptions are passed to client.Dial (tests add a SettingEngine).
	ClientOptions []client.Option
}

// Defaults.
const (
	DefaultFPS        = 5
	DefaultClipFrames = 150
	DefaultMaxTracks  = 16
)

// DefaultSize is the default output frame size.
var DefaultSize = Size{224, 224}

func (c *Config) setDefaults() {
	if c.FPS == 0 {
		c.FPS = DefaultFPS
	}
	if c.Size == (Size{}) {
		c.Size = DefaultSize
	}
	if c.ClipFrames == 0 {
		c.ClipFrames = DefaultClipFrames
	}
	if c.MaxTracks == 0 {
		c.MaxTracks = DefaultMaxTracks
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem with c at once (after defaults).
func (c *Config) Validate() error {
	var errs []error
	if !strings.HasPrefix(c.Server, "http://") && !strings.HasPrefix(c.Server, "https://") {
		errs = append(errs, fmt.Errorf("server %q: want an http:// or https:// URL", c.Server))
	}
	if c.Token == "" {
		errs = append(errs, errors.New("no token: mint one with `khadga token --role recorder`"))
	}
	if c.FPS > 240 {
		errs = append(errs, fmt.Errorf("fps %g: at most 240", c.FPS))
	}
	if c.MaxTracks < 1 || c.MaxTracks > 1024 {
		errs = append(errs, fmt.Errorf("max tracks %d: want 1..1024", c.MaxTracks))
	}
	oc := c.outputConfig()
	if err := oc.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *Config) outputConfig() OutputConfig {
	return OutputConfig{Dir: c.Out, Room: c.Room, Format: c.Format, Checksum: c.Checksum, Size: c.Size, ClipFrames: c.ClipFrames,
		NoSync: c.NoSync, Logger: c.Logger}
}

// ErrNotRecorder: the token does not carry the recorder role.
var ErrNotRecorder = errors.New("recorder: the token's role is not recorder")

// Recorder is the recorder bot: a khadga peer in one room that records the
// video peers choose to send it and the text they send it. It never asks
// for media; a peer's client sends to it only after its user opted in.
type Recorder struct {
	cfg    Config
	log    *slog.Logger
	out    *Output
	mu     sync.Mutex
	tracks map[string]*Pipeline // recording now, by peer/track/ssrc
	done   []TrackReport
	wg     sync.WaitGroup
}

// New checks cfg and opens the output directory.
func New(cfg Config) (*Recorder, error) {
	cfg.setDefaults()
	if cfg.FPS < 0 {
		cfg.FPS = 0 // keep every frame
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	if len(Codecs()) == 0 {
		return nil, fmt.Errorf("recorder: %w", ErrNoDecoder)
	}
	out, err := OpenOutput(cfg.outputConfig())
	if err != nil {
		return nil, err
	}
	return &Recorder{cfg: cfg, log: cfg.Logger, out: out, tracks: map[string]*Pipeline{}}, nil
}

// Output is where the recorder writes.
func (r *Recorder) Output() *Output { return r.out }

// Run signs in, joins the room and records until ctx is done. Then it
// finishes every open clip, leaves, and closes the output. ready, if not
// nil, is called once the room is joined.
func (r *Recorder) Run(ctx context.Context, ready func(self proto.Member)) error {
	defer r.out.Close()
	// Offer and accept only the codecs this build decodes, so that no peer
	// sends video the recorder would have to throw away.
	opts := append([]client.Option{client.WithLogger(r.log), client.WithoutPresence(),
		client.WithVideoCodecs(Codecs()...)}, r.cfg.ClientOptions...)
	c, err := client.Dial(ctx, r.cfg.Server, client.Credentials{AccessToken: r.cfg.Token}, opts...)
	if err != nil {
		return fmt.Errorf("recorder: sign in: %w", err)
	}
	defer c.Close()
	if role := c.Self().Role; role != proto.RoleRecorder {
		return fmt.Errorf("%w (it is %q)", ErrNotRecorder, role)
	}
	room, err := c.Join(ctx, r.cfg.Room)
	if err != nil {
		return fmt.Errorf("recorder: join %s: %w", r.cfg.Room, err)
	}
	r.log.Info("recording", slog.String("room", r.cfg.Room), slog.String("peer", c.Self().Peer),
		slog.String("out", r.cfg.Out), slog.Any("codecs", Codecs()))
	if ready != nil {
		ready(c.Self())
	}
	// Tracks stop reading when ctx ends: each pipeline then writes what it
	// has queued and finishes its clip.
	tctx, stopTracks := context.WithCancel(context.Background())
	defer stopTracks()
	defer context.AfterFunc(ctx, stopTracks)()
	r.events(ctx, tctx, room)
	stopTracks()
	r.wg.Wait()
	r.log.Info("stopped", slog.String("room", r.cfg.Room))
	return nil
}

func (r *Recorder) events(ctx, tctx context.Context, room *client.Room) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-room.Events():
			if !ok {
				return
			}
			switch e := ev.(type) {
			case *client.IncomingTrack:
				r.track(tctx, e)
			case *client.Message:
				if err := r.out.WriteChat(ChatLine{Time: time.Now().UTC(), Peer: e.From.Peer, User: e.From.User, Text: e.Text}); err != nil {
					r.log.Error("chat not written", "err", err)
				}
			case *client.MemberJoined:
				r.log.Info("member joined", slog.String("peer", e.Member.Peer), slog.String("user", e.Member.User))
			case *client.MemberLeft:
				r.log.Info("member left", slog.String("peer", e.Member.Peer), slog.String("user", e.Member.User))
			}
		}
	}
}

// track starts recording an incoming video track in its own goroutine.
func (r *Recorder) track(ctx context.Context, e *client.IncomingTrack) {
	tr := e.Track
	codec := tr.Codec().MimeType
	log := r.log.With(slog.String("peer", e.From.Peer), slog.String("user", e.From.User), slog.String("codec", codec))
	if tr.Kind() != webrtc.RTPCodecTypeVideo {
		log.Info("ignoring a non-video track")
		return
	}
	if !slices.ContainsFunc(Codecs(), func(c string) bool { return strings.EqualFold(c, codec) }) {
		log.Warn("ignoring a track in a codec this build cannot decode")
		return
	}
	key := e.From.Peer + "/" + tr.ID() + "/" + fmt.Sprint(tr.SSRC())
	r.mu.Lock()
	if len(r.tracks) >= r.cfg.MaxTracks {
		r.mu.Unlock()
		log.Warn("ignoring a track: too many tracks", slog.Int("max", r.cfg.MaxTracks))
		return
	}
	p, err := NewPipeline(r.out, TrackInfo{
		Peer: e.From.Peer, User: e.From.User, Track: tr.ID(), Codec: canonicalCodec(codec), Consent: time.Now(),
	}, TrackOptions{
		FPS: r.cfg.FPS, Fit: r.cfg.Fit, QueueFrames: r.cfg.QueueFrames, Logger: log, RequestKeyframe: e.RequestKeyframe,
	})
	if err != nil {
		r.mu.Unlock()
		log.Error("cannot record track", "err", err)
		return
	}
	r.tracks[key] = p
	r.mu.Unlock()
	log.Info("recording track", slog.String("track", tr.ID()))
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		err := p.ReadRTP(ctx, tr)
		st, cerr := p.Close()
		log.Info("track ended", slog.Any("stats", st), slog.Any("err", errors.Join(err, cerr)))
		r.mu.Lock()
		delete(r.tracks, key)
		r.done = append(r.done, TrackReport{Info: p.info, Stats: st})
		r.mu.Unlock()
	}()
}

// canonicalCodec spells a MIME type the way vpx names it.
func canonicalCodec(m string) string {
	for _, c := range Codecs() {
		if strings.EqualFold(c, m) {
			return c
		}
	}
	return m
}

// TrackReport is what happened to one recorded track.
type TrackReport struct {
	Info  TrackInfo
	Stats TrackStats
}

// Tracks reports every track recorded so far, finished ones first.
func (r *Recorder) Tracks() []TrackReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.done)
	for _, p := range r.tracks {
		out = append(out, TrackReport{Info: p.info, Stats: p.Stats()})
	}
	return out
}
