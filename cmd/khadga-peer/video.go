package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/client/media"
	"github.com/khadga/khadga/proto"
)

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

var _ flag.Value = (*listFlag)(nil)

type videoOpts struct {
	room     string
	pattern  bool
	frames   int
	fps      int
	to       listFlag
	consent  bool
	recordTo string
}

func runVideo(ctx context.Context, e *env, args []string) error {
	var c common
	var o videoOpts
	fs := newFlags(e, "video", "video --room ROOM [--pattern --to USER] [--record-to DIR]",
		"Sends the synthetic VP8 test pattern (moving picture plus frame counter) to the\nusers named with --to, and/or records the video others send as IVF files.\nVideo goes only to the users you name; a recorder gets it only with\n--consent-recording. Needs a build with cgo and libvpx for --pattern.",
		"khadga-peer video --room studio --pattern --frames 300 --to bob --record-to ./rec")
	c.register(fs, e, 0)
	fs.StringVar(&o.room, "room", "", "room to join")
	fs.BoolVar(&o.pattern, "pattern", false, "send the test pattern")
	fs.IntVar(&o.frames, "frames", 0, "stop the pattern after this many frames (0: run until interrupted)")
	fs.IntVar(&o.fps, "fps", 30, "pattern frame rate")
	fs.Var(&o.to, "to", "user to send video to (repeatable; \"all\" for every non-recorder member)")
	fs.BoolVar(&o.consent, "consent-recording", false, "also send to members with the recorder role named in --to")
	fs.StringVar(&o.recordTo, "record-to", "", "write received video tracks as IVF files in this directory")
	if err := parse(fs, args); err != nil {
		return err
	}
	if o.room == "" || (!o.pattern && o.recordTo == "") {
		return fail(exitUsage, "need --room and --pattern and/or --record-to")
	}
	if o.pattern && len(o.to) == 0 {
		return fail(exitUsage, "--pattern needs --to: video goes only to users you choose")
	}
	var pub *client.Publication
	var src *media.TestPattern
	if o.pattern {
		var err error
		if src, err = media.NewTestPattern(media.PatternConfig{Frames: o.frames, FPS: o.fps}); err != nil {
			if errors.Is(err, media.ErrNoLibvpx) {
				return fail(exitError, "%s", needCgo)
			}
			return fail(exitError, "%v", err)
		}
		defer src.Close()
	}
	if o.recordTo != "" {
		if err := os.MkdirAll(o.recordTo, 0o755); err != nil {
			return fail(exitError, "%v", err)
		}
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	cl, r, err := c.dialJoin(ctx, e, o.room)
	if err != nil {
		return err
	}
	defer cl.Close()
	if src != nil {
		if pub, err = r.PublishVideo(src); err != nil {
			return fail(exitError, "%v", err)
		}
	}
	var recs sync.WaitGroup
	defer recs.Wait()
	var done <-chan struct{}
	if pub != nil && o.frames > 0 && o.recordTo == "" {
		done = pub.Done()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-done:
			fmt.Fprintf(e.stdout, "sent %d frames\n", pub.Frames())
			return pub.Err()
		case ev, ok := <-r.Events():
			if !ok {
				return fail(exitConnect, "left the room")
			}
			if m, ok := failed(ev); ok {
				fmt.Fprintln(e.stderr, failedLine(m))
			}
			switch ev := ev.(type) {
			case *client.PeerConnected:
				fmt.Fprintln(e.stderr, connectedLine(ev, c.joined))
				if pub != nil && o.wants(ev.Member) {
					var opts []client.SendOption
					if o.consent {
						opts = append(opts, client.ConsentToRecording())
					}
					if err := pub.SendTo(ev.Member.Peer, opts...); err != nil {
						fmt.Fprintf(e.stderr, "not sending to %s: %v\n", ev.Member.User, err)
					} else {
						fmt.Fprintf(e.stderr, "sending video to %s\n", ev.Member.User)
					}
				}
			case *client.IncomingTrack:
				if o.recordTo != "" {
					recs.Add(1)
					go func() {
						defer recs.Done()
						record(ctx, e, ev, o.recordTo)
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

func (o *videoOpts) wants(m proto.Member) bool {
	for _, u := range o.to {
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
