package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/khadga/khadga/internal/config"
)

// Configuration. Each command has one typed config struct (serveConfig,
// turnCommandConfig, credentialsConfig, and the admin commands' structs),
// built from shared groups: logConfig below, tlsConfig (tls.go),
// turnConfig (turn.go, shared by serve, turn and turn-credentials) and
// adminConfig (admin.go). Package internal/config fills it from the
// defaults in its tags, then the YAML file named by --config or
// KHADGA_CONFIG (strict: unknown keys and wrong types are errors naming the
// line), then the KHADGA_* environment, then the flags, and calls its
// Validate, which reports every problem at once.
//
// To add a setting, add one field to the struct of the command (or group)
// it belongs to, with its tags:
//
//	MessageRate float64 `yaml:"ws-message-rate" default:"200" usage:"WebSocket messages per second per connection"`
//
// That is the flag --ws-message-rate, the variable KHADGA_WS_MESSAGE_RATE,
// the file key ws-message-rate, its line in --help and in `khadga config
// example`. Use it where the command builds its library config (such as
// serveConfig.signalingConfig), and put a check that the library's own
// Validate does not make into the struct's Validate. The tests load the
// whole example file, so a bad default tag fails them.

// command describes a khadga command for internal/config: every setting
// has a KHADGA_* variable, and --config (KHADGA_CONFIG) names the file.
func command(name, synopsis, about, example string) config.Command {
	return config.Command{Name: name, Synopsis: synopsis, About: about, Example: example,
		EnvPrefix: "KHADGA_", FileFlag: "config", SharedKeys: sharedKey}
}

// sharedKey reports whether key is a file key of some khadga command. One
// file serves them all (the admin commands read the server's, as
// KHADGA_CONFIG in a container's environment has them do), so a command
// skips the others' keys and refuses only a key no command knows, a typo.
func sharedKey(key string) bool { return fileKeys()[key] }

var fileKeys = sync.OnceValue(func() map[string]bool {
	keys := map[string]bool{}
	for _, cfg := range []any{&serveConfig{}, &turnCommandConfig{}, &credentialsConfig{}, &userConfig{},
		&tokenConfig{}, &adminConfig{}, &migrateConfig{}} {
		for _, k := range config.Keys(cfg) {
			keys[k] = true
		}
	}
	return keys
})

// load fills cfg from its defaults, the config file, the environment and
// args, and returns the positional arguments.
func load(cfg any, cmd config.Command, args []string) ([]string, error) {
	if err := config.Defaults(cfg); err != nil {
		return nil, err // a bad default tag: the tests catch it
	}
	return config.Load(cfg, cmd, args)
}

// loadNoArgs is load for a command that takes no positional arguments.
func loadNoArgs(cfg any, cmd config.Command, args []string) error {
	rest, err := load(cfg, cmd, args)
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("%s: unexpected arguments %q", cmd.Name, rest)
	}
	return err
}

// logConfig are the logging settings of the long-running commands.
type logConfig struct {
	Level slog.Level `yaml:"log-level" default:"info" usage:"log level: debug, info, warn, error"`
	JSON  bool       `yaml:"log-json" usage:"log as JSON lines"`
}

// logger builds the process logger; every package gets it injected.
func (c logConfig) logger() *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Level}
	if c.JSON {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// runConfig handles `khadga config example`, which prints every setting of
// `khadga serve` as a commented YAML file: the documented default config.
// It is generated from serveConfig, so it cannot drift from the flags.
func runConfig(_ context.Context, args []string) error {
	if len(args) != 1 || args[0] != "example" {
		return errors.New("usage: khadga config example > khadga.yaml")
	}
	var c serveConfig
	if err := config.Defaults(&c); err != nil {
		return err
	}
	fmt.Println("# khadga configuration (khadga serve --config khadga.yaml).")
	fmt.Println("# Keys are the flag names; flags and KHADGA_* variables override this file.")
	fmt.Println("# Every setting is shown with its default, commented out.")
	return config.Example(os.Stdout, &c, serveCommand)
}
