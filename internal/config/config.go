// Package config loads a command's typed configuration: one struct, filled
// from its defaults, then an optional YAML file, then the environment, then
// the command line, and checked by one Validate that reports every problem
// at once. The commands in cmd/ use it; it is the nats-server and LiveKit
// shape (a typed config, strict decoding, flags override the file), with
// the flag set, the help text and the example file all generated from the
// struct so that they cannot drift apart.
//
// # The struct
//
// Each exported field is one setting, described by its tags:
//
//		HTTP string `yaml:"http" default:"127.0.0.1:8080" usage:"HTTP listen address"`
//
//	  - yaml is the setting's key: in the file, as the flag (--http), and, in
//	    upper snake case after Command.EnvPrefix, as the environment variable
//	    (KHADGA_HTTP). A struct field tagged `yaml:",inline"` adds its own
//	    fields at the same level, so that commands share groups of settings.
//	  - default is the value before any layer applies, in flag syntax;
//	    Defaults sets it. Without the tag the default is the zero value.
//	  - usage is the help text, shown by --help and in the example file.
//	  - env names the environment variable instead of the prefix rule, and
//	    env:"-" gives the setting none.
//
// Field types: string, bool, int, int64, float64, time.Duration, []string
// (repeatable on the command line, a YAML list or one comma-separated
// string in the file and the environment), and any type implementing
// encoding.TextUnmarshaler (such as slog.Level).
//
// # Adding a setting
//
// Adding a setting is one line: a field with its tags in the command's
// config struct. The flag, the environment variable, the file key, the help
// line and the `khadga config example` entry follow from it. A check that
// involves the value goes into the struct's Validate method, which Load
// calls after every layer.
//
// # Strictness
//
// The YAML file must be one mapping whose keys are the struct's settings.
// An unknown or repeated key, a list or mapping where one value belongs
// (the bug of decoding into map[string]any and printing the value back),
// and a value the field's type cannot hold are each an error naming the
// file, the line and the key. The file is walked as a yaml.Node tree
// rather than decoded with KnownFields: KnownFields names unknown keys, but
// a wrong type is reported by line and value only, and the first error of
// a TextUnmarshaler stops decoding, so the walk is what lets Load report
// every problem with its key. Every value goes through the same parser as
// the environment and the flags, so "10s" means the same in all three.
package config

import (
	"bytes"
	"encoding"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Command describes how a command takes its configuration.
type Command struct {
	// Name is the command as typed ("khadga serve"), for help and errors.
	Name string
	// Synopsis, About and Example make up the --help text.
	Synopsis, About, Example string
	// EnvPrefix names each setting's environment variable: the prefix and
	// the key in upper snake case. Empty means only settings with an env
	// tag have one.
	EnvPrefix string
	// FileFlag is the flag that names the YAML file (its environment
	// variable follows EnvPrefix). Empty means the command reads no file.
	FileFlag string
	// SharedKeys, if set, names the keys of other commands that may share
	// the file (the admin commands read the server's): they are skipped,
	// where another unknown key is an error.
	SharedKeys func(key string) bool
	// Output receives --help, and the warning for an environment variable
	// that looks like a misspelt setting (see misspelt); nil means
	// standard error.
	Output io.Writer
}

// MaxFileSize bounds the config file: it is small by nature.
const MaxFileSize = 1 << 20

// setting is one field of a config struct.
type setting struct {
	key, env, usage, def string
	v                    reflect.Value // addressable
}

// settings lists the fields of the struct cfg points to, inline groups
// flattened, in declaration order.
func settings(cfg any, envPrefix string) []setting {
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("config: want a pointer to a struct, got %T", cfg))
	}
	var out []setting
	collect(v.Elem(), envPrefix, &out)
	return out
}

func collect(v reflect.Value, envPrefix string, out *[]setting) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		key, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" { // an embedded group may be unexported
			collect(v.Field(i), envPrefix, out)
			continue
		}
		if !f.IsExported() || key == "" || key == "-" {
			continue
		}
		if !supported(f.Type) {
			panic(fmt.Sprintf("config: %s.%s: unsupported type %s", t, f.Name, f.Type))
		}
		s := setting{key: key, usage: f.Tag.Get("usage"), def: f.Tag.Get("default"), v: v.Field(i)}
		switch env, ok := f.Tag.Lookup("env"); {
		case ok && env != "-":
			s.env = env
		case !ok && envPrefix != "":
			s.env = envPrefix + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
		}
		*out = append(*out, s)
	}
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	stringsType     = reflect.TypeFor[[]string]()
	unmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func supported(t reflect.Type) bool {
	if reflect.PointerTo(t).Implements(unmarshalerType) || t == stringsType {
		return true
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
		return true
	}
	return false
}

// set parses text into the setting. A list replaces its old value when
// replace is set, else it grows (a repeated flag).
func (s setting) set(text string, replace bool) error {
	if u, ok := s.v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(text))
	}
	switch {
	case s.v.Type() == durationType:
		d, err := time.ParseDuration(text)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 30s or 15m", text)
		}
		s.v.SetInt(int64(d))
		return nil
	case s.v.Type() == stringsType:
		var list []string
		if !replace {
			list = s.v.Interface().([]string)
		}
		for _, e := range strings.Split(text, ",") {
			if e = strings.TrimSpace(e); e != "" {
				list = append(list, e)
			}
		}
		s.v.Set(reflect.ValueOf(list))
		return nil
	}
	switch s.v.Kind() {
	case reflect.String:
		s.v.SetString(text)
	case reflect.Bool:
		b, err := strconv.ParseBool(text)
		if err != nil {
			return fmt.Errorf("%q is not true or false", text)
		}
		s.v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(text, 10, s.v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a whole number", text)
		}
		s.v.SetInt(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", text)
		}
		s.v.SetFloat(f)
	}
	return nil
}

// String is the setting's current value in flag syntax.
func (s setting) String() string {
	if m, ok := s.v.Interface().(encoding.TextMarshaler); ok {
		b, _ := m.MarshalText()
		return string(b)
	}
	if s.v.Type() == stringsType {
		return strings.Join(s.v.Interface().([]string), ",")
	}
	return fmt.Sprint(s.v.Interface())
}

func (s setting) isList() bool { return s.v.Type() == stringsType }

// Defaults sets every setting of the struct cfg points to from its default
// tag. An error is a bad tag: a bug in the struct, which tests catch.
func Defaults(cfg any) error {
	var errs []error
	for _, s := range settings(cfg, "") {
		if s.def != "" {
			if err := s.set(s.def, true); err != nil {
				errs = append(errs, fmt.Errorf("default of %s: %w", s.key, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Load fills the struct cfg points to, in rising precedence, from its
// current values (set them with Defaults first), the YAML file named by
// Command.FileFlag, the environment and args. Flags and positional
// arguments may be mixed; everything after "--" is positional. Load returns
// the positional arguments, flag.ErrHelp after printing --help, or one
// error listing every problem: those of the file and the environment, and
// then those of cfg's Validate() error method if it has one.
func Load(cfg any, cmd Command, args []string) ([]string, error) {
	ss := settings(cfg, cmd.EnvPrefix)
	var errs []error
	if path := cmd.filePath(args); path != "" {
		errs = append(errs, readFile(path, ss, cmd.SharedKeys)...)
	}
	for _, s := range ss {
		if val, ok := os.LookupEnv(s.env); ok && s.env != "" {
			if err := s.set(val, true); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.env, err))
			}
		}
	}
	for _, w := range cmd.misspelt(ss, os.Environ()) {
		fmt.Fprintf(cmd.output(), "%s: %s\n", cmd.Name, w)
	}
	fs := cmd.flagSet(ss)
	rest, err := parseMixed(fs, args)
	if err != nil {
		return nil, err
	}
	if v, ok := cfg.(interface{ Validate() error }); ok {
		errs = append(errs, v.Validate())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("bad configuration:\n%w", err)
	}
	return rest, nil
}

// fileEnv is the environment variable naming the config file.
func (c Command) fileEnv() string {
	if c.EnvPrefix == "" {
		return ""
	}
	return c.EnvPrefix + strings.ToUpper(c.FileFlag)
}

// filePath finds the file flag on the command line (before parsing: the
// file is the lowest layer, applied first) or in its environment variable.
func (c Command) filePath(args []string) string {
	if c.FileFlag == "" {
		return ""
	}
	for i, a := range args {
		if a == "--" {
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != c.FileFlag {
			continue
		}
		if hasVal {
			return val
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	if env := c.fileEnv(); env != "" {
		return os.Getenv(env)
	}
	return ""
}

// flagSet makes the command line layer: one flag per setting, plus the
// file flag (already applied, so it only needs to parse).
func (c Command) flagSet(ss []setting) *flag.FlagSet {
	fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
	if c.Output != nil {
		fs.SetOutput(c.Output)
	}
	for _, s := range ss {
		fs.Var(&flagValue{s: s}, s.key, s.usage)
	}
	if c.FileFlag != "" {
		fs.String(c.FileFlag, "", "YAML config file; its keys are these flags' names")
	}
	fs.Usage = func() { c.usage(fs.Output(), ss) }
	return fs
}

// flagValue is a setting as a flag. The first time a list flag is given it
// replaces the list of the lower layers; repeating it adds to the list.
type flagValue struct {
	s    setting
	seen bool
}

func (f *flagValue) String() string {
	if f == nil || !f.s.v.IsValid() {
		return ""
	}
	return f.s.String()
}

func (f *flagValue) Set(v string) error {
	err := f.s.set(v, !f.seen)
	f.seen = true
	return err
}

// IsBoolFlag lets a bool setting be given as a bare --flag.
func (f *flagValue) IsBoolFlag() bool { return f.s.v.Kind() == reflect.Bool }

// parseMixed parses flags that may come after positional arguments
// ("user add alice --role admin").
func parseMixed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos, tail []string
	for i, a := range args {
		if a == "--" {
			args, tail = args[:i], args[i+1:]
			break
		}
	}
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return append(pos, tail...), nil
}

// usage prints the help: synopsis, what the command does, every flag with
// its environment variable and default, and an example.
func (c Command) usage(w io.Writer, ss []setting) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n\nFlags", c.Synopsis, c.About)
	if c.EnvPrefix != "" {
		fmt.Fprintf(w, " (each also read from its %s* environment variable)", c.EnvPrefix)
	}
	fmt.Fprintln(w, ":")
	if c.FileFlag != "" {
		fmt.Fprintf(w, "  --%s FILE (%s)\n    \tYAML config file; its keys are these flags' names\n", c.FileFlag, c.fileEnv())
	}
	for _, s := range ss {
		fmt.Fprintf(w, "  --%s", s.key)
		if s.env != "" {
			fmt.Fprintf(w, " (%s)", s.env)
		}
		fmt.Fprintf(w, "\n    \t%s", s.usage)
		// The default tag, never the value the file and environment gave:
		// help goes to logs, and some settings are secrets.
		if d := s.def; d != "" && d != "false" && d != "0" && d != "0s" {
			fmt.Fprintf(w, " (default %s)", d)
		}
		fmt.Fprintln(w)
	}
	if c.Example != "" {
		fmt.Fprintf(w, "\nExample:\n  %s\n", c.Example)
	}
}

// Example writes every setting of the struct cfg points to, with its help
// and environment variable, as a commented YAML file of its current values
// (the defaults, after Defaults). Uncommented, it loads as is.
func Example(w io.Writer, cfg any, cmd Command) error {
	var b bytes.Buffer
	for _, s := range settings(cfg, cmd.EnvPrefix) {
		fmt.Fprintf(&b, "\n# %s", s.usage)
		if s.env != "" {
			fmt.Fprintf(&b, " (env %s)", s.env)
		}
		v := s.v.Interface()
		if s.isList() && s.v.Len() == 0 {
			v = []string{}
		}
		var val yaml.Node
		if err := val.Encode(v); err != nil {
			return err
		}
		val.Style |= yaml.FlowStyle
		doc := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: s.key}, &val}}
		y, err := yaml.Marshal(doc)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "\n# %s", bytes.TrimSpace(y))
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// Keys lists the file keys of the struct cfg points to, for
// Command.SharedKeys.
func Keys(cfg any) []string {
	var keys []string
	for _, s := range settings(cfg, "") {
		keys = append(keys, s.key)
	}
	return keys
}

// Misspelt returns the warnings Load prints for env (as os.Environ gives
// it) with cfg's settings: see misspelt.
func (c Command) Misspelt(cfg any, env []string) []string {
	return c.misspelt(settings(cfg, c.EnvPrefix), env)
}

func (c Command) output() io.Writer {
	if c.Output != nil {
		return c.Output
	}
	return os.Stderr
}

// misspelt warns of the variables of env (as os.Environ gives them) that
// carry the command's prefix, name no setting of it or of the commands
// that share its file (SharedKeys), and are one or two letters from a
// setting's variable: KHADGA_HTPP=127.0.0.1:9090 is otherwise ignored
// without a word, and the server listens where the operator did not
// mean. It only warns: the prefix is shared with variables that are no
// setting at all (another program's, a compose file's), and only a near
// miss is worth a word.
func (c Command) misspelt(ss []setting, env []string) []string {
	if c.EnvPrefix == "" {
		return nil
	}
	known := map[string]bool{c.fileEnv(): true}
	for _, s := range ss {
		known[s.env] = true
	}
	var warnings []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		rest, ok := strings.CutPrefix(name, c.EnvPrefix)
		if !ok || known[name] || (c.SharedKeys != nil && c.SharedKeys(strings.ReplaceAll(strings.ToLower(rest), "_", "-"))) {
			continue
		}
		if near := nearest(name, ss); near != "" {
			warnings = append(warnings, fmt.Sprintf("%s is not a setting, and is ignored: did you mean %s?", name, near))
		}
	}
	return warnings
}

// nearest returns the variable of ss at most two edits from name, if any.
func nearest(name string, ss []setting) string {
	best, bestD := "", 3
	for _, s := range ss {
		if s.env == "" {
			continue
		}
		if d := editDistance(name, s.env); d < bestD {
			best, bestD = s.env, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
