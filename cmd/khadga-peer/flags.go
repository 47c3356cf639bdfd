package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/internal/config"
	"github.com/khadga/khadga/proto"
)

// errHelp: --help was asked for and printed.
var errHelp = errors.New("help shown")

// Configuration: each command has one typed struct, the settings every
// connecting command takes (common) inlined into it. Package
// internal/config fills it from the defaults in its tags, then the
// KHADGA_PEER_* environment (--relay is KHADGA_PEER_RELAY; --config, the
// token directory, is KHADGA_PEER_CONFIG as it always was), then the flags,
// and calls its Validate. khadga-peer reads no config file: its --config
// names the directory of the stored tokens. To add a setting, add a field
// with its tags to the command's struct (see package internal/config).

// common are the settings every connecting command takes. --server has no
// KHADGA_PEER_* variable: KHADGA_SERVER is read after the stored server.
type common struct {
	Server    string        `yaml:"server" env:"-" usage:"server URL (default: the one used at login, else $KHADGA_SERVER)"`
	ConfigDir string        `yaml:"config" usage:"directory of the stored tokens (default: the user config dir + /khadga)"`
	Relay     bool          `yaml:"relay" usage:"use TURN relays only (ICE transport policy relay): peers never see your address"`
	Loopback  bool          `yaml:"loopback" usage:"also offer 127.0.0.1 candidates (for tests on one machine)"`
	LogLevel  slog.Level    `yaml:"log-level" default:"warn" usage:"log level: debug, info, warn or error"`
	Timeout   time.Duration `yaml:"timeout" usage:"give up after this long (0: never)"` // each command sets its default
	Invite    string        `yaml:"invite" usage:"invite to a room whose owner requires one: the token, or the whole invite link"`
	joined    time.Time     // when dialJoin asked to join
	// timeoutSet: the user gave --timeout (or KHADGA_PEER_TIMEOUT). Only
	// then does it bound transfers too; see transferContext.
	timeoutSet bool
}

// timeoutUnset marks a --timeout that no layer set; nobody types it.
const timeoutUnset = time.Duration(math.MinInt64)

// peerCommand describes a khadga-peer command for internal/config.
func peerCommand(e *env, name, synopsis, about, example string) config.Command {
	return config.Command{Name: "khadga-peer " + name, Synopsis: "khadga-peer " + synopsis, About: about,
		Example: example, EnvPrefix: "KHADGA_PEER_", Output: e.stderr}
}

// parse fills cfg, whose common part is c, from its defaults (the tags, the
// token directory of e, and timeout), the environment and args. It
// returns the positional arguments; --help becomes errHelp and every other
// problem a usage error.
func parse(e *env, cfg any, c *common, timeout time.Duration, cmd config.Command, args []string) ([]string, error) {
	if err := config.Defaults(cfg); err != nil {
		return nil, err
	}
	c.ConfigDir, c.Timeout = e.configDir, timeoutUnset
	rest, err := config.Load(cfg, cmd, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, errHelp
	}
	if err != nil {
		return nil, fail(exitUsage, "%v", err)
	}
	c.timeoutSet = c.Timeout != timeoutUnset
	switch {
	case !c.timeoutSet:
		c.Timeout = timeout
	case c.Timeout < 0:
		return nil, fail(exitUsage, "--timeout %s: must not be negative (0: never)", c.Timeout)
	}
	return rest, nil
}

func (c *common) logger(e *env) *slog.Logger {
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: c.LogLevel}))
}

func (c *common) dir() (string, error) {
	if c.ConfigDir != "" {
		return c.ConfigDir, nil
	}
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the config dir: %w (use --config)", err)
	}
	return filepath.Join(base, "khadga"), nil
}

// dial connects with the stored tokens (or KHADGA_USER/KHADGA_PASSWORD),
// saving rotated tokens back.
func (c *common) dial(ctx context.Context, e *env) (*client.Client, error) {
	dir, err := c.dir()
	if err != nil {
		return nil, fail(exitError, "%v", err)
	}
	log := c.logger(e)
	opts := []client.Option{client.WithLogger(log)}
	if c.Relay {
		opts = append(opts, client.WithRelayOnly())
	}
	if c.Loopback {
		var se webrtc.SettingEngine
		se.SetIncludeLoopbackCandidate(true)
		opts = append(opts, client.WithSettingEngine(se))
	}
	var cred client.Credentials
	var shared *sharedTokens // the stored sign-in, which other processes may hold too
	server := c.Server
	if u, p := os.Getenv("KHADGA_USER"), os.Getenv("KHADGA_PASSWORD"); u != "" && p != "" {
		cred = client.Credentials{Username: u, Password: p}
	} else {
		st, err := loadStore(dir)
		if err != nil {
			return nil, fail(exitAuth, "not signed in (%v); run khadga-peer login", err)
		}
		if server == "" {
			server = st.Server
		}
		cred = client.Credentials{AccessToken: st.Access, RefreshToken: st.Refresh}
		shared = &sharedTokens{dir: dir, signIn: *st, log: log}
	}
	if server == "" {
		server = os.Getenv("KHADGA_SERVER")
	}
	if server == "" {
		return nil, fail(exitUsage, "no server: pass --server or log in first")
	}
	if shared != nil {
		shared.server = server
		opts = append(opts, client.WithTokenRefresher(shared.refresh))
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl, err := client.Dial(dctx, server, cred, opts...)
	if err != nil {
		return nil, apiFail(err)
	}
	return cl, nil
}

// dialJoin signs in and joins room. On success the caller closes the
// client. It notes when it asked to join, for connectedLine.
func (c *common) dialJoin(ctx context.Context, e *env, room string) (*client.Client, *client.Room, error) {
	// A name the server would refuse is a mistake in the command line:
	// said before signing in, with the usage exit code.
	if err := proto.ValidRoom(room); err != nil {
		return nil, nil, fail(exitUsage, "room %q: %v", room, err)
	}
	cl, err := c.dial(ctx, e)
	if err != nil {
		return nil, nil, err
	}
	c.joined = time.Now()
	r, err := c.join(ctx, cl, room)
	if err != nil {
		cl.Close()
		return nil, nil, err
	}
	return cl, r, nil
}

func (c *common) join(ctx context.Context, cl *client.Client, room string) (*client.Room, error) {
	var opts []client.JoinOption
	if c.Invite != "" {
		opts = append(opts, client.WithInvite(inviteToken(c.Invite)))
	}
	r, err := cl.Join(ctx, room, opts...)
	switch {
	case errors.Is(err, client.ErrInviteRequired):
		return nil, fail(exitConnect, "room %s needs an invite: pass --invite with the link its owner shared", room)
	case errors.Is(err, client.ErrBadInvite):
		return nil, fail(exitConnect, "that invite is not valid for room %s: it is mistyped, or its owner made a new one", room)
	case err != nil:
		return nil, fail(exitConnect, "%v", err)
	}
	return r, nil
}

// inviteToken is the invite of an invite link
// (https://host/#room=R&invite=T), or s itself when it is a bare token.
func inviteToken(s string) string {
	_, frag, ok := strings.Cut(s, "#")
	if !ok {
		return s
	}
	q, err := url.ParseQuery(frag)
	if err != nil || q.Get("invite") == "" {
		return s // the join refuses it with a clear error
	}
	return q.Get("invite")
}

// progressBar renders "name [=====     ]  45% 12.3 MiB/27.0 MiB".
func progressBar(w io.Writer, name string, done, total int64, final bool) {
	const width = 30
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	n := int(frac * width)
	end := "\r"
	if final {
		end = "\n"
	}
	fmt.Fprintf(w, "%s [%s%s] %3.0f%% %.1f/%.1f MiB%s", name, strings.Repeat("=", n), strings.Repeat(" ", width-n),
		frac*100, float64(done)/(1<<20), float64(total)/(1<<20), end)
}

// watchProgress draws t's progress on w until it ends.
func watchProgress(w io.Writer, t *client.Transfer) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-t.Done():
			d, total := t.Progress()
			progressBar(w, t.Name, d, total, true)
			return t.Err()
		case <-tick.C:
			d, total := t.Progress()
			progressBar(w, t.Name, d, total, false)
		}
	}
}

// withTimeout applies --timeout (0: none) to ctx.
func (c *common) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.Timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.Timeout)
}

// transferContext is the context that bounds a file transfer of a
// command run under ctx, whose wait (for the peer, for an offer) is
// bounded by wait, the --timeout. A --timeout the user set bounds the
// whole command, transfers included: a peer that trickles a few bytes a
// minute never stalls long enough for the client's two minutes of silence
// to end its transfer. A command's default timeout bounds only the wait,
// so that it never cuts a large transfer short.
func (c *common) transferContext(ctx, wait context.Context) context.Context {
	if c.timeoutSet {
		return wait
	}
	return ctx
}

// timedOut is the error of a transfer that wait's --timeout cut (exit 5,
// as for a peer that did not come in time), or nil when something else
// ended it.
func (c *common) timedOut(wait context.Context, what string) error {
	if !c.timeoutSet || !errors.Is(wait.Err(), context.DeadlineExceeded) {
		return nil
	}
	return fail(exitPeer, "%s: not done within --timeout %s, cancelled", what, c.Timeout)
}
