package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/proto"
)

// Config configures a Recorder.
type Config struct {
	// Server is the khadga server's base URL, for example https://khadga.example.
	Server string
	// Token is a token with the recorder role from `khadga token`: a bot
	// refresh token (--refresh), which the recorder renews its access
	// tokens with for as long as it lives, or an access token, which
	// works until it expires.
	Token string
	// Rooms are the rooms to join and record, each into its own output:
	// Out itself for one room, Out/ROOM for each of several.
	Rooms []string
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
	// MaxTracks caps the tracks, audio and video, recorded at once
	// (default 16); one peer takes at most half of them, and at most 4.
	// More wait, their packets dropped, until a slot frees.
	MaxTracks int
	// MaxWaiting caps the tracks waiting for a slot (default 64); one
	// peer has at most as many waiting as it may record at once. A track
	// past them is refused: not recorded at all (TrackReport.Stopped).
	MaxWaiting int
	// CPUBudget is the share of one core that each track's decoding may
	// take, averaged over BudgetWindow (default DefaultCPUBudget, 0.5); a
	// track over it is stopped (budget.go). Negative: no budget.
	CPUBudget float64
	// BudgetWindow is the span CPUBudget is averaged over (default 5 s).
	BudgetWindow time.Duration
	// IdleTimeout is how long a recorded track may send nothing before
	// it gives up its slot (default 30 s; idle.go). Negative: never.
	IdleTimeout time.Duration
	// NoAudio leaves peers' audio out of the clips.
	NoAudio bool
	// NoSync skips fsync (see OutputConfig.NoSync).
	NoSync bool
	Logger *slog.Logger
	// ClientOptions are passed to client.Dial (tests add a SettingEngine).
	ClientOptions []client.Option
}

// Defaults and limits.
const (
	DefaultFPS        = 5
	DefaultClipFrames = 150
	DefaultMaxTracks  = 16
	DefaultMaxWaiting = 64
	// DefaultIdleTimeout is Config.IdleTimeout's default: far longer
	// than a sender's pause between packets, even for a video frozen on
	// one frame (a browser still sends a frame a second or so), short
	// enough that a silent track does not keep a slot from peers waiting.
	DefaultIdleTimeout = 30 * time.Second
	// MaxRooms caps the rooms one recorder joins (the server's default
	// cap on rooms per session).
	MaxRooms = 16
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
	if c.MaxWaiting == 0 {
		c.MaxWaiting = DefaultMaxWaiting
	}
	if c.CPUBudget == 0 {
		c.CPUBudget = DefaultCPUBudget
	}
	if c.BudgetWindow == 0 {
		c.BudgetWindow = DefaultBudgetWindow
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
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
		errs = append(errs, errors.New("no token: mint one with `khadga token --role recorder --refresh`"))
	}
	if c.FPS > 240 {
		errs = append(errs, fmt.Errorf("fps %g: at most 240", c.FPS))
	}
	if c.MaxTracks < 1 || c.MaxTracks > 1024 {
		errs = append(errs, fmt.Errorf("max tracks %d: want 1..1024", c.MaxTracks))
	}
	if c.MaxWaiting < 1 || c.MaxWaiting > 4096 {
		errs = append(errs, fmt.Errorf("max waiting %d: want 1..4096", c.MaxWaiting))
	}
	if c.CPUBudget > 64 {
		errs = append(errs, fmt.Errorf("cpu budget %g: at most 64 cores (negative: none)", c.CPUBudget))
	}
	if c.BudgetWindow < 100*time.Millisecond || c.BudgetWindow > time.Hour {
		errs = append(errs, fmt.Errorf("budget window %v: want 100ms..1h", c.BudgetWindow))
	}
	if c.IdleTimeout > 0 && c.IdleTimeout < 100*time.Millisecond || c.IdleTimeout > 24*time.Hour {
		errs = append(errs, fmt.Errorf("idle timeout %v: want 100ms..24h (negative: none)", c.IdleTimeout))
	}
	switch {
	case len(c.Rooms) == 0:
		errs = append(errs, errors.New("no room to record"))
	case len(c.Rooms) > MaxRooms:
		errs = append(errs, fmt.Errorf("%d rooms: at most %d", len(c.Rooms), MaxRooms))
	}
	seen := map[string]bool{}
	for _, room := range c.Rooms {
		if seen[room] {
			errs = append(errs, fmt.Errorf("room %q listed twice", room))
		}
		seen[room] = true
		oc := c.outputConfig(room)
		if err := oc.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// outputConfig is room's output: Out, or Out/room with several rooms.
func (c *Config) outputConfig(room string) OutputConfig {
	dir := c.Out
	if len(c.Rooms) > 1 && validRoom(room) == nil {
		dir = filepath.Join(c.Out, room)
	}
	return OutputConfig{Dir: dir, Room: room, Format: c.Format, Checksum: c.Checksum, Size: c.Size, ClipFrames: c.ClipFrames,
		NoSync: c.NoSync, Logger: c.Logger}
}

// ErrNotRecorder: the token does not carry the recorder role.
var ErrNotRecorder = errors.New("recorder: the token's role is not recorder")

// Recorder is the recorder bot: a khadga peer in one or more rooms that
// records the video and audio peers choose to send it, from when they
// consent, and the text they send it. It never asks for media; a peer's
// client sends to it only after its user opted in, and says when.
type Recorder struct {
	cfg   Config
	log   *slog.Logger
	rooms map[string]*roomRec
	mu    sync.Mutex
	live  map[string]*liveTrack // recording or waiting for consent, by key
	per   map[string]int        // live tracks per room/peer
	// Tracks waiting for a slot, and per room/peer.
	waiting    int
	waitingPer map[string]int
	freed      chan struct{} // closed (and replaced) when a live track ends
	done       []TrackReport
	wg         sync.WaitGroup
	// lost is why the server ended the recorder's rooms (RoomLost): when
	// it ended every one, Run returns it.
	lost error
}

// New checks cfg and opens each room's output directory.
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
	r := &Recorder{cfg: cfg, log: cfg.Logger, rooms: map[string]*roomRec{}, live: map[string]*liveTrack{},
		per: map[string]int{}, waitingPer: map[string]int{}, freed: make(chan struct{})}
	for _, room := range cfg.Rooms {
		rr, err := openRoom(cfg.outputConfig(room), cfg.Logger.With(slog.String("room", room)), audioKept(cfg.ClipFrames, cfg.FPS))
		if err != nil {
			r.closeRooms()
			return nil, err
		}
		r.rooms[room] = rr
	}
	return r, nil
}

// Output is where the recorder writes room's shards.
func (r *Recorder) Output(room string) *Output {
	if rr := r.rooms[room]; rr != nil {
		return rr.out
	}
	return nil
}

func (r *Recorder) closeRooms() {
	for _, rr := range r.rooms {
		rr.close()
	}
}

// Run signs in, joins the rooms and records until ctx is done. Then it
// finishes every open clip, leaves, and closes the outputs. ready, if not
// nil, is called once every room is joined.
func (r *Recorder) Run(ctx context.Context, ready func(self proto.Member)) error {
	defer r.closeRooms()
	// Offer and accept only the codecs this build decodes, so that no peer
	// sends video the recorder would have to throw away.
	opts := append([]client.Option{client.WithLogger(r.log), client.WithoutPresence(),
		client.WithVideoCodecs(Codecs()...)}, r.cfg.ClientOptions...)
	c, err := client.Dial(ctx, r.cfg.Server, client.TokenCredentials(r.cfg.Token), opts...)
	if err != nil {
		return fmt.Errorf("recorder: sign in: %w", err)
	}
	defer c.Close()
	if role := c.Self().Role; role != proto.RoleRecorder {
		return fmt.Errorf("%w (it is %q)", ErrNotRecorder, role)
	}
	joined := make(map[string]*client.Room, len(r.cfg.Rooms))
	for _, name := range r.cfg.Rooms {
		room, err := c.Join(ctx, name)
		if err != nil {
			return fmt.Errorf("recorder: join %s: %w", name, err)
		}
		joined[name] = room
	}
	r.log.Info("recording", slog.Any("rooms", r.cfg.Rooms), slog.String("peer", c.Self().Peer),
		slog.String("out", r.cfg.Out), slog.Any("codecs", Codecs()), slog.Bool("audio", r.audio()))
	if ready != nil {
		ready(c.Self())
	}
	// Tracks stop reading when ctx ends: each pipeline then writes what it
	// has queued and finishes its clip.
	tctx, stopTracks := context.WithCancel(context.Background())
	defer stopTracks()
	defer context.AfterFunc(ctx, stopTracks)()
	var rooms sync.WaitGroup
	for name, room := range joined {
		rooms.Go(func() { r.events(ctx, tctx, r.rooms[name], room) })
	}
	rooms.Wait()
	stopTracks()
	r.wg.Wait()
	r.log.Info("stopped", slog.Any("rooms", r.cfg.Rooms))
	r.mu.Lock()
	defer r.mu.Unlock()
	if ctx.Err() == nil && r.lost != nil {
		// Every room was lost (for one, the recorder's token was revoked:
		// client.ErrSignedOut): say so, so that the process fails rather
		// than exits as if asked to.
		return fmt.Errorf("recorder: no room left to record in: %w", r.lost)
	}
	return nil
}

func (r *Recorder) events(ctx, tctx context.Context, rr *roomRec, room *client.Room) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-room.Events():
			if !ok {
				return
			}
			switch e := ev.(type) {
			case *client.RoomLost:
				rr.log.Error("the server ended the recorder's place in the room; it records no more there", slog.Any("err", e.Err))
				r.mu.Lock()
				if r.lost == nil {
					r.lost = e.Err
				}
				r.mu.Unlock()
			case *client.IncomingTrack:
				r.track(tctx, rr, e)
			case *client.RecordingConsent:
				rr.consent(e)
			case *client.Message:
				rr.chat(e)
			case *client.MemberJoined:
				rr.log.Info("member joined", slog.String("peer", e.Member.Peer), slog.String("user", e.Member.User))
			case *client.MemberLeft:
				rr.log.Info("member left", slog.String("peer", e.Member.Peer), slog.String("user", e.Member.User))
				rr.left(e.Member)
			}
		}
	}
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
	Stats TrackStats  // video
	Audio *AudioStats // audio tracks only
	// Stopped says why the recorder stopped recording the track before it
	// ended (StopCPUBudget), or never recorded it (StopTooManyWaiting);
	// empty when it recorded the track while its peer consented.
	Stopped string
}

// Tracks reports the tracks recorded so far, finished ones first: every
// live one, and the last finished ones (at least 512, at most 1024),
// tracks refused included. A track whose peer withdrew consent and
// granted it again is reported once per stretch of consent.
func (r *Recorder) Tracks() []TrackReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.done)
	for _, t := range r.live {
		if rep, ok := t.report(); ok {
			out = append(out, rep)
		}
	}
	return out
}
