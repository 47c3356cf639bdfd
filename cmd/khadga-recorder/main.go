// Command khadga-recorder is khadga's recorder bot: it signs in with a
// recorder-role token, joins a room, and writes the video that peers choose
// to send it as training tensors (see package client/recorder and
// docs/recorder.md).
//
//	khadga-recorder --server https://khadga.example --room lab --out ./data
//
// The token comes from --token-file, or the KHADGA_TOKEN environment
// variable, or --token (visible to other users in the process list). The
// first SIGINT or SIGTERM finishes the clips being written and exits; a
// second one exits at once (the next run removes any partial file).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/khadga/khadga/client/recorder"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run parses args, records until a signal, and returns the exit code.
func run(args []string, stderr io.Writer) int {
	cfg, level, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "khadga-recorder: %v\n", err)
		return 2
	}
	if len(recorder.Codecs()) == 0 {
		fmt.Fprintln(stderr, "khadga-recorder: this binary was built without libvpx (cgo disabled), so it cannot decode video.\n"+
			"Rebuild it with CGO_ENABLED=1 and libvpx-dev installed (Debian: apt-get install libvpx-dev pkg-config).")
		return 1
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	rec, err := recorder.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "khadga-recorder: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // the next signal gets the default action: exit at once
		cfg.Logger.Info("finishing the clips being written; signal again to exit at once")
	}()
	if err := rec.Run(ctx, nil); err != nil {
		fmt.Fprintf(stderr, "khadga-recorder: %v\n", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (recorder.Config, slog.Level, error) {
	var cfg recorder.Config
	fs := flag.NewFlagSet("khadga-recorder", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Server, "server", "http://127.0.0.1:8080", "khadga server base URL")
	token := fs.String("token", "", "access token with the recorder role (prefer KHADGA_TOKEN or --token-file)")
	tokenFile := fs.String("token-file", "", "file holding the access token")
	fs.StringVar(&cfg.Room, "room", "", "room to join and record (required)")
	fs.StringVar(&cfg.Out, "out", "recordings", "output directory")
	fs.Float64Var(&cfg.FPS, "fps", recorder.DefaultFPS, "frames per second to keep, by capture time (-1: every frame)")
	size := fs.String("size", recorder.DefaultSize.String(), "output frame size WxH")
	fit := fs.String("fit", "crop", "fitting to --size: crop, pad or stretch")
	fs.IntVar(&cfg.ClipFrames, "clip-frames", recorder.DefaultClipFrames, "frames per clip (one clip per shard)")
	format := fs.String("format", "tar", "output format: tar (WebDataset shards of .npy) or safetensors")
	checksum := fs.String("checksum", "crc32", "each shard's checksum in manifest.jsonl: crc32 (as Python's zlib.crc32) or sha256")
	fs.IntVar(&cfg.QueueFrames, "queue", 64, "frames queued per track before the oldest is dropped")
	fs.IntVar(&cfg.MaxTracks, "max-tracks", recorder.DefaultMaxTracks, "tracks recorded at once")
	fs.BoolVar(&cfg.NoSync, "no-sync", false, "skip fsync before each rename (faster; shards may not survive a power cut)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return cfg, 0, err
	}
	if fs.NArg() > 0 {
		return cfg, 0, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var errs []error
	var err error
	if cfg.Size, err = recorder.ParseSize(*size); err != nil {
		errs = append(errs, err)
	}
	if cfg.Fit, err = recorder.ParseFit(*fit); err != nil {
		errs = append(errs, err)
	}
	if cfg.Format, err = recorder.ParseFormat(*format); err != nil {
		errs = append(errs, err)
	}
	if cfg.Checksum, err = recorder.ParseChecksum(*checksum); err != nil {
		errs = append(errs, err)
	}
	if cfg.Room == "" {
		errs = append(errs, errors.New("--room is required"))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level: %w", err))
	}
	cfg.Token = *token
	if env := os.Getenv("KHADGA_TOKEN"); cfg.Token == "" && env != "" {
		cfg.Token = env
	}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("--token-file: %w", err))
		}
		cfg.Token = strings.TrimSpace(string(b))
	}
	if cfg.Token == "" {
		errs = append(errs, errors.New("no token: set KHADGA_TOKEN, --token-file or --token (mint one with `khadga token --role recorder`)"))
	}
	return cfg, level, errors.Join(errs...)
}
