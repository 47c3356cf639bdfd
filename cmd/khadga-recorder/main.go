// Command khadga-recorder is khadga's recorder bot: it signs in with a
// recorder-role token, joins one or more rooms, and writes the video and
// audio that peers choose to send it as training tensors (see package
// client/recorder and docs/recorder.md).
//
//	khadga-recorder --server https://khadga.example --room lab,studio --out ./data
//
// Settings come from a YAML file (--config or KHADGA_RECORDER_CONFIG, keys
// as the flags), then KHADGA_RECORDER_* variables (--out is
// KHADGA_RECORDER_OUT), then the flags; `khadga-recorder --help` lists them.
// To add one, add a field with its tags to settings (see package
// internal/config). The token comes from --token-file, or the KHADGA_TOKEN
// environment variable, or --token (visible to other users in the process
// list). A bot refresh token (`khadga token --refresh`) lets the recorder
// run unattended for as long as it lives: it renews its access tokens
// before they expire. The first SIGINT or SIGTERM finishes the clips being written and
// exits; a second one exits at once (the next run removes any partial
// file).
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
	"time"

	"github.com/khadga/khadga/client/recorder"
	"github.com/khadga/khadga/internal/config"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run parses args, records until a signal, and returns the exit code.
func run(args []string, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "khadga-recorder: %v\n", err)
		return 2
	}
	if len(recorder.Codecs()) == 0 {
		fmt.Fprintln(stderr, "khadga-recorder: this binary was built without libvpx (cgo disabled), so it cannot decode video.\n"+
			"Rebuild it with CGO_ENABLED=1 and libvpx-dev installed (Debian: apt-get install libvpx-dev libyuv-dev libopus-dev pkg-config).")
		return 1
	}
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

// settings is the recorder's configuration.
type settings struct {
	Server       string            `yaml:"server" default:"http://127.0.0.1:8080" usage:"khadga server base URL"`
	Token        string            `yaml:"token" env:"KHADGA_TOKEN" usage:"token with the recorder role from khadga token: a refresh token (--refresh, renewed for months) or an access token (prefer KHADGA_TOKEN or --token-file)"`
	TokenFile    string            `yaml:"token-file" usage:"file holding the token (over --token and KHADGA_TOKEN)"`
	Rooms        []string          `yaml:"room" usage:"room to join and record (required; several: a,b,c, each written to OUT/ROOM)"`
	Out          string            `yaml:"out" default:"recordings" usage:"output directory"`
	FPS          float64           `yaml:"fps" default:"5" usage:"frames per second to keep, by capture time (-1: every frame)"`
	Size         recorder.Size     `yaml:"size" default:"224x224" usage:"output frame size WxH"`
	Fit          recorder.Fit      `yaml:"fit" default:"crop" usage:"fitting to --size: crop, pad or stretch"`
	ClipFrames   int               `yaml:"clip-frames" default:"150" usage:"frames per clip (one clip per shard)"`
	Format       recorder.Format   `yaml:"format" default:"tar" usage:"output format: tar (WebDataset shards of .npy) or safetensors"`
	Checksum     recorder.Checksum `yaml:"checksum" default:"crc32" usage:"each shard's checksum in manifest.jsonl: crc32 (as Python's zlib.crc32) or sha256"`
	QueueFrames  int               `yaml:"queue" default:"64" usage:"frames queued per track before the oldest is dropped"`
	MaxTracks    int               `yaml:"max-tracks" default:"16" usage:"tracks (video and audio) recorded at once"`
	MaxWaiting   int               `yaml:"max-waiting" default:"64" usage:"tracks waiting for a slot (one peer's: as many as it may record); more are refused"`
	CPUBudget    float64           `yaml:"cpu-budget" default:"0.5" usage:"share of one core each track's decoding may take over --budget-window (a peer's tracks together twice that); a track over it is stopped (-1: no budget)"`
	BudgetWindow time.Duration     `yaml:"budget-window" default:"5s" usage:"span --cpu-budget is averaged over"`
	IdleTimeout  time.Duration     `yaml:"idle-timeout" default:"30s" usage:"a recorded track that sends nothing this long gives up its slot (negative: never)"`
	NoAudio      bool              `yaml:"no-audio" usage:"leave peers' audio out (by default it is written as 16 kHz float32 beside each clip's frames)"`
	NoSync       bool              `yaml:"no-sync" usage:"skip fsync before each rename (faster; shards may not survive a power cut)"`
	LogLevel     slog.Level        `yaml:"log-level" default:"info" usage:"debug, info, warn or error"`
}

var command = config.Command{
	Name:      "khadga-recorder",
	Synopsis:  "khadga-recorder --room ROOM [flags]",
	About:     "Record the video and audio that peers in ROOM choose to send, as training tensors.",
	Example:   "khadga token --user rec --role recorder --room lab --refresh > rec.token && khadga-recorder --token-file rec.token --room lab --out ./data",
	EnvPrefix: "KHADGA_RECORDER_",
	FileFlag:  "config",
}

// Validate reports every problem at once, the recorder's own checks
// included.
func (c *settings) Validate() error {
	var errs []error
	if len(c.Rooms) == 0 {
		errs = append(errs, errors.New("--room is required"))
	}
	rc, err := c.recorder(io.Discard)
	if err != nil {
		errs = append(errs, err)
	}
	switch {
	case rc.Token == "":
		errs = append(errs, errors.New("no token: set KHADGA_TOKEN, --token-file or --token (mint one with `khadga token --role recorder --refresh`)"))
	case len(c.Rooms) > 0: // the recorder's own checks, which would repeat the missing room
		if err := rc.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// recorder builds the recorder's Config, reading --token-file.
func (c *settings) recorder(stderr io.Writer) (recorder.Config, error) {
	rc := recorder.Config{
		Server: c.Server, Token: c.Token, Rooms: c.Rooms, Out: c.Out, FPS: c.FPS, Size: c.Size, Fit: c.Fit,
		ClipFrames: c.ClipFrames, Format: c.Format, Checksum: c.Checksum, QueueFrames: c.QueueFrames,
		MaxTracks: c.MaxTracks, MaxWaiting: c.MaxWaiting, CPUBudget: c.CPUBudget, BudgetWindow: c.BudgetWindow, IdleTimeout: c.IdleTimeout,
		NoAudio: c.NoAudio, NoSync: c.NoSync,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: c.LogLevel})),
	}
	if c.TokenFile != "" {
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return rc, fmt.Errorf("--token-file: %w", err)
		}
		rc.Token = strings.TrimSpace(string(b))
	}
	return rc, nil
}

func parseFlags(args []string, stderr io.Writer) (recorder.Config, error) {
	var c settings
	if err := config.Defaults(&c); err != nil {
		return recorder.Config{}, err
	}
	cmd := command
	cmd.Output = stderr
	rest, err := config.Load(&c, cmd, args)
	if err != nil {
		return recorder.Config{}, err
	}
	if len(rest) > 0 {
		return recorder.Config{}, fmt.Errorf("unexpected arguments %q", rest)
	}
	return c.recorder(stderr)
}
