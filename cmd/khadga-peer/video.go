package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/client/media"
	"github.com/khadga/khadga/client/media/vpx"
	"github.com/khadga/khadga/proto"
)

// videoConfig is the configuration of `khadga-peer video`.
type videoConfig struct {
	common   `yaml:",inline"`
	Room     string   `yaml:"room" usage:"room to join"`
	Pattern  bool     `yaml:"pattern" usage:"send the test pattern"`
	Frames   int      `yaml:"frames" usage:"stop the pattern after this many frames (0: run until interrupted)"`
	FPS      int      `yaml:"fps" default:"30" usage:"pattern frame rate"`
	To       []string `yaml:"to" usage:"user to send video to (repeatable; \"all\" for every non-recorder member)"`
	Consent  bool     `yaml:"consent-recording" usage:"also send to members with the recorder role named in --to"`
	RecordTo string   `yaml:"record-to" usage:"write received video tracks as IVF files in this directory"`
}

func (c *videoConfig) Validate() error {
	if c.Room == "" || (!c.Pattern && c.RecordTo == "") {
		return errors.New("need --room and --pattern and/or --record-to")
	}
	if c.Pattern && len(c.To) == 0 {
		return errors.New("--pattern needs --to: video goes only to users you choose")
	}
	return nil
}

func runVideo(ctx context.Context, e *env, args []string) error {
	var c videoConfig
	rest, err := parse(e, &c, &c.common, 0, peerCommand(e, "video", "video --room ROOM [--pattern --to USER] [--record-to DIR]",
		"Sends the synthetic VP8 test pattern (moving picture plus frame counter) to the\nusers named with --to, and/or records the video others send as IVF files.\nVideo goes only to the users you name; a recorder gets it only with\n--consent-recording. Needs a build with cgo and libvpx for --pattern.",
		"khadga-peer video --room studio --pattern --frames 300 --to bob --record-to ./rec"), args)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fail(exitUsage, "unexpected arguments %q", rest)
	}
	var src *media.TestPattern
	if c.Pattern {
		if src, err = media.NewTestPattern(media.PatternConfig{Frames: c.Frames, FPS: c.FPS}); err != nil {
			if errors.Is(err, vpx.ErrNoLibvpx) {
				return fail(exitError, "%s", needCgo)
			}
			return fail(exitError, "%v", err)
		}
		defer src.Close()
	}
	if c.RecordTo != "" {
		if err := os.MkdirAll(c.RecordTo, 0o755); err != nil {
			return fail(exitError, "%v", err)
		}
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	cl, r, err := c.dialJoin(ctx, e, c.Room)
	if err != nil {
		return err
	}
	defer cl.Close()
	v := &videoSession{c: &c, e: e, r: r, joined: c.joined}
	if src != nil {
		if v.pub, err = r.PublishVideo(src); err != nil {
			return fail(exitError, "%v", err)
		}
	}
	// Nothing else is printed until someone else is in the room: say what
	// it will do, so that a quiet terminal does not look hung.
	fmt.Fprintf(e.stderr, "joined %s as %s: %s (Ctrl-C to stop)\n", c.Room, cl.Self().User, c.plan())
	defer v.recs.Wait()
	return v.run(ctx)
}

// videoSession is a joined room sending the pattern and recording tracks.
type videoSession struct {
	c      *videoConfig
	e      *env
	r      *client.Room
	pub    *client.Publication // nil without --pattern
	joined time.Time           // when it asked to join, for connectedLine
	recs   sync.WaitGroup      // one per track being recorded
}

// run handles the room's events until ctx ends, the room is left, or the
// pattern sent its --frames when nothing is recorded.
func (v *videoSession) run(ctx context.Context) error {
	var done <-chan struct{}
	if v.pub != nil && v.c.Frames > 0 && v.c.RecordTo == "" {
		done = v.pub.Done()
	}
	var lost *client.RoomLost
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-done:
			fmt.Fprintf(v.e.stdout, "sent %d frames\n", v.pub.Frames())
			return v.pub.Err()
		case ev, ok := <-v.r.Events():
			if !ok {
				return roomGone(lost)
			}
			if l, is := ev.(*client.RoomLost); is {
				lost = l
			}
			if m, ok := failed(ev); ok {
				fmt.Fprintln(v.e.stderr, failedLine(m))
			}
			switch ev := ev.(type) {
			case *client.PeerConnected:
				fmt.Fprintln(v.e.stderr, connectedLine(ev, v.joined))
				v.send(ev.Member)
			case *client.IncomingTrack:
				if v.c.RecordTo != "" {
					v.recs.Add(1)
					go func() {
						defer v.recs.Done()
						record(ctx, v.e, ev, v.c.RecordTo)
					}()
				}
			}
		}
	}
}

// needCgo says how to get a khadga-peer that can encode video. The README
// names the same packages (its test checks this message against it).
const needCgo = "--pattern encodes VP8 with libvpx, and this khadga-peer was built without cgo. " +
	"Install a C compiler and libvpx (Debian: sudo apt-get install build-essential pkg-config libvpx-dev), " +
	"then build again with cgo (the default once gcc is on the PATH): go build ./cmd/khadga-peer"

// send starts sending the pattern to m if --to names it.
func (v *videoSession) send(m proto.Member) {
	if v.pub == nil || !v.c.wants(m) {
		return
	}
	var opts []client.SendOption
	if v.c.Consent {
		opts = append(opts, client.ConsentToRecording())
	}
	if err := v.pub.SendTo(m.Peer, opts...); err != nil {
		fmt.Fprintf(v.e.stderr, "not sending to %s: %v\n", m.User, err)
	} else {
		fmt.Fprintf(v.e.stderr, "sending video to %s\n", m.User)
	}
}

// plan says what the command will do in its room.
func (c *videoConfig) plan() string {
	var what []string
	if c.Pattern {
		what = append(what, "will send the test pattern to "+strings.Join(c.To, ", "))
	}
	if c.RecordTo != "" {
		what = append(what, "will record the video others send to "+c.RecordTo)
	}
	return strings.Join(what, "; ")
}

func (c *videoConfig) wants(m proto.Member) bool {
	for _, u := range c.To {
		if u == m.User || (u == "all" && m.Role != proto.RoleRecorder) {
			return true
		}
	}
	return false
}

// record writes one incoming track to DIR/USER-PEER-TRACK.ivf.
func record(ctx context.Context, e *env, tr *client.IncomingTrack, dir string) {
	name := fmt.Sprintf("%s-%s-%s.ivf", tr.From.User, tr.From.Peer, tr.Track.ID())
	name = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r < 0x20 {
			return '_'
		}
		return r
	}, name)
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintf(e.stderr, "record %s: %v\n", tr.From.User, err)
		return
	}
	fmt.Fprintf(e.stderr, "recording %s's video to %s\n", tr.From.User, path)
	_ = tr.RequestKeyframe()
	n, err := client.WriteIVF(ctx, tr.Track, f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "record %s: %v\n", tr.From.User, err)
	}
	fmt.Fprintf(e.stdout, "recorded %d frames from %s to %s\n", n, tr.From.User, path)
}
