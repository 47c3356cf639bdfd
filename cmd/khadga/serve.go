package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/khadga/khadga/signaling"
)

// serveOptions are the flags of `khadga serve`.
type serveOptions struct {
	http         string
	dataDir      string
	origins      listFlag
	accessTTL    time.Duration
	resumeWindow time.Duration
	logLevel     string
	logJSON      bool
}

func serveFlags(fs *flag.FlagSet) *serveOptions {
	o := &serveOptions{}
	fs.StringVar(&o.http, "http", "127.0.0.1:8080", "HTTP listen address")
	fs.StringVar(&o.dataDir, "data", "khadga-data", "data directory (holds the bbolt store)")
	fs.Var(&o.origins, "allow-origin", "extra browser origin allowed to open the WebSocket, scheme://host[:port] (repeatable)")
	fs.DurationVar(&o.accessTTL, "access-ttl", 15*time.Minute, "lifetime of access tokens")
	fs.DurationVar(&o.resumeWindow, "resume-window", 30*time.Second, "how long a dropped session can resume")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.BoolVar(&o.logJSON, "log-json", false, "log as JSON lines")
	return o
}

// newLogger builds the process logger; every package gets it injected.
func newLogger(level string, asJSON bool) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	if asJSON {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
}

func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("khadga serve", flag.ContinueOnError)
	fs.Usage = usage(fs, "khadga [serve] [flags]", "Run the signaling server with its embedded TURN server.",
		"khadga serve --http 0.0.0.0:8080 --turn-public-ip 203.0.113.7")
	o := serveFlags(fs)
	t := turnFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(o.logLevel, o.logJSON)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.http)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.http, err)
	}
	cfg := signaling.Config{
		Logger:         log,
		DataDir:        o.dataDir,
		AllowedOrigins: o.origins,
		AccessTTL:      o.accessTTL,
		ResumeWindow:   o.resumeWindow,
	}
	srv, err := signaling.New(cfg, ln)
	if err != nil {
		ln.Close()
		return err
	}
	defer srv.Close()
	stopTURN, err := startEmbeddedTURN(t, srv, log)
	if err != nil {
		return err
	}
	defer stopTURN()
	log.Info("khadga is running", slog.String("url", "http://"+displayAddr(ln.Addr())), slog.String("data", cfg.StorePath()))
	return srv.Serve(ctx)
}

// displayAddr turns a listen address into one a browser can open.
func displayAddr(a net.Addr) string {
	s := a.String()
	if strings.HasPrefix(s, "0.0.0.0:") || strings.HasPrefix(s, "[::]:") {
		_, port, _ := net.SplitHostPort(s)
		return "localhost:" + port
	}
	return s
}

// usage prints a command's synopsis, flags (with their environment twins)
// and an example.
func usage(fs *flag.FlagSet, synopsis, what, example string) func() {
	return func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: %s\n\n%s\n\nflags (each also read from its KHADGA_* environment variable):\n", synopsis, what)
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(w, "  --%s (%s)\n    \t%s", f.Name, envName(f.Name), f.Usage)
			if f.DefValue != "" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(w)
		})
		fmt.Fprintf(w, "\nexample:\n  %s\n", example)
	}
}
