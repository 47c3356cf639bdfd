package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/client"
)

// errHelp: --help was asked for and printed.
var errHelp = errors.New("help shown")

// common are the flags every connecting command takes.
type common struct {
	server    string
	configDir string
	relay     bool
	loopback  bool
	logLevel  string
	timeout   time.Duration
	joined    time.Time // when dialJoin asked to join
}

// newFlags makes a command's flag set with its description and example.
func newFlags(e *env, name, synopsis, about, example string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: khadga-peer %s\n\n%s\n\nFlags:\n", synopsis, about)
		fs.PrintDefaults()
		fmt.Fprintf(w, "\nExample:\n  %s\n", example)
	}
	return fs
}

func (c *common) register(fs *flag.FlagSet, e *env, withTimeout time.Duration) {
	fs.StringVar(&c.server, "server", "", "server URL (default: the one used at login, else $KHADGA_SERVER)")
	fs.StringVar(&c.configDir, "config", e.configDir, "directory of the stored tokens (default: the user config dir + /khadga)")
	fs.BoolVar(&c.relay, "relay", false, "use TURN relays only (ICE transport policy relay): peers never see your address")
	fs.BoolVar(&c.loopback, "loopback", false, "also offer 127.0.0.1 candidates (for tests on one machine)")
	fs.StringVar(&c.logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	fs.DurationVar(&c.timeout, "timeout", withTimeout, "give up after this long (0: never)")
}

// parse parses args, turning --help into errHelp and other problems into
// usage errors.
func parse(fs *flag.FlagSet, args []string) error {
	// Allow flags after positional arguments ("chat lobby --relay").
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return errHelp
			}
			return fail(exitUsage, "%v", err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

func (c *common) logger(e *env) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(c.logLevel)); err != nil {
		lv = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: lv}))
}

func (c *common) dir() (string, error) {
	if c.configDir != "" {
		return c.configDir, nil
	}
	if d := os.Getenv("KHADGA_PEER_CONFIG"); d != "" {
		return d, nil
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
	if c.relay {
		opts = append(opts, client.WithRelayOnly())
	}
	if c.loopback {
		var se webrtc.SettingEngine
		se.SetIncludeLoopbackCandidate(true)
		opts = append(opts, client.WithSettingEngine(se))
	}
	var cred client.Credentials
	server := c.server
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
		opts = append(opts, client.WithTokenCallback(func(t client.Tokens) {
			st.Access, st.Refresh, st.Expiry = t.Access, t.Refresh, t.Expiry
			if err := saveStore(dir, st); err != nil {
				log.Warn("could not save the refreshed tokens", slog.Any("err", err))
			}
		}))
	}
	if server == "" {
		server = os.Getenv("KHADGA_SERVER")
	}
	if server == "" {
		return nil, fail(exitUsage, "no server: pass --server or log in first")
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl, err := client.Dial(dctx, server, cred, opts...)
	if err != nil {
		if errors.Is(err, client.ErrUnauthorized) {
			return nil, fail(exitAuth, "%v", err)
		}
		return nil, fail(exitConnect, "%v", err)
	}
	return cl, nil
}

// dialJoin signs in and joins room. On success the caller closes the
// client. It notes when it asked to join, for connectedLine.
func (c *common) dialJoin(ctx context.Context, e *env, room string) (*client.Client, *client.Room, error) {
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
	r, err := cl.Join(ctx, room)
	if err != nil {
		return nil, fail(exitConnect, "%v", err)
	}
	return r, nil
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
	if c.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.timeout)
}
