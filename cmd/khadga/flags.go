package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// envName is the environment twin of a flag: --turn-listen is KHADGA_TURN_LISTEN.
func envName(flagName string) string {
	return "KHADGA_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags parses args into fs, first taking each flag's default from its
// KHADGA_* environment twin, so that the command line wins over the
// environment and the environment over the built-in default.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var bad []string
	fs.VisitAll(func(f *flag.Flag) {
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok {
			return
		}
		if err := f.Value.Set(v); err != nil {
			bad = append(bad, fmt.Sprintf("%s=%q: %v", envName(f.Name), v, err))
		}
	})
	if len(bad) > 0 {
		return fmt.Errorf("bad environment: %s", strings.Join(bad, "; "))
	}
	return fs.Parse(args)
}

// listFlag is a repeatable flag whose values may also be comma-separated, so
// that one KHADGA_* variable can carry several.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}
