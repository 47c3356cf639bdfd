package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// envName is the environment twin of a flag: --turn-listen is KHADGA_TURN_LISTEN.
func envName(flagName string) string {
	return "KHADGA_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// maxConfigFile bounds the config file: it is small by nature.
const maxConfigFile = 1 << 20

// parseFlags fills fs from, in rising precedence, the optional YAML config
// file (--config or KHADGA_CONFIG; its keys are the flag names), the KHADGA_*
// environment twins, and the command line. Every problem in the file and the
// environment is reported at once.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var errs []error
	if fs.Lookup("config") == nil {
		fs.String("config", "", "YAML config file; its keys are these flags' names")
	}
	if path := configPath(fs, args); path != "" {
		errs = append(errs, applyConfigFile(fs, path)...)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && f.Name != "config" {
			resetList(f)
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", envName(f.Name), v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bad configuration:\n%w", err)
	}
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if f := fs.Lookup(name); f != nil && strings.HasPrefix(a, "-") {
			resetList(f)
		}
	}
	return fs.Parse(args)
}

// resetList empties a list flag before a higher layer sets it, so that the
// command line replaces the environment's list instead of adding to it.
func resetList(f *flag.Flag) {
	if l, ok := f.Value.(*listFlag); ok {
		*l = nil
	}
}

// configPath finds --config on the command line (before parsing, since the
// file must be applied first) or in KHADGA_CONFIG.
func configPath(fs *flag.FlagSet, args []string) string {
	for i, a := range args {
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			continue
		}
		if hasVal {
			return val
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return os.Getenv("KHADGA_CONFIG")
}

// applyConfigFile sets flags from a YAML mapping of flag name to value.
// Unknown keys are errors that name the key.
func applyConfigFile(fs *flag.FlagSet, path string) []error {
	f, err := os.Open(path)
	if err != nil {
		return []error{fmt.Errorf("config file: %w", err)}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return []error{fmt.Errorf("config file %s: %w", path, err)}
	}
	if len(b) > maxConfigFile {
		return []error{fmt.Errorf("config file %s: over %d bytes", path, maxConfigFile)}
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return []error{fmt.Errorf("config file %s: %w", path, err)}
	}
	var errs []error
	for _, key := range sortedKeys(doc) {
		fl := fs.Lookup(key)
		if fl == nil || key == "config" {
			errs = append(errs, fmt.Errorf("config file %s: unknown key %q", path, key))
			continue
		}
		if err := fl.Value.Set(yamlValue(doc[key])); err != nil {
			errs = append(errs, fmt.Errorf("config file %s: %s: %v", path, key, err))
		}
	}
	return errs
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// yamlValue renders a YAML value as flag text: sequences become the
// comma-separated form that list flags accept.
func yamlValue(v any) string {
	if seq, ok := v.([]any); ok {
		parts := make([]string, len(seq))
		for i, e := range seq {
			parts[i] = fmt.Sprint(e)
		}
		return strings.Join(parts, ",")
	}
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// exampleConfig writes every flag of fs as a commented YAML default config.
func exampleConfig(w io.Writer, fs *flag.FlagSet) {
	var b bytes.Buffer
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		fmt.Fprintf(&b, "# %s (env %s)\n", f.Usage, envName(f.Name))
		val, _ := yaml.Marshal(f.DefValue)
		fmt.Fprintf(&b, "# %s: %s\n", f.Name, strings.TrimSpace(string(val)))
	})
	w.Write(b.Bytes())
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
