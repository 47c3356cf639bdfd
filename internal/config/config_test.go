package config

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

type logGroup struct {
	Level slog.Level `yaml:"log-level" default:"info" usage:"log level"`
	JSON  bool       `yaml:"log-json" usage:"log as JSON lines"`
}

// testConfig has one setting of each supported type.
type testConfig struct {
	HTTP    string        `yaml:"http" default:"127.0.0.1:8080" usage:"listen address"`
	Data    string        `yaml:"data" default:"data" usage:"data directory"`
	Origins []string      `yaml:"allow-origin" usage:"origins (repeatable)"`
	Window  time.Duration `yaml:"resume-window" default:"30s" usage:"resume window"`
	Quota   int           `yaml:"quota" default:"10" usage:"quota"`
	Rate    float64       `yaml:"rate" default:"2.5" usage:"rate"`
	Token   string        `yaml:"token" env:"TEST_TOKEN" usage:"token"`
	Secret  string        `yaml:"secret" env:"-" usage:"no environment twin"`
	Log     logGroup      `yaml:",inline"`

	validate func(*testConfig) error
}

func (c *testConfig) Validate() error {
	if c.validate != nil {
		return c.validate(c)
	}
	return nil
}

var testCmd = Command{Name: "test", Synopsis: "test [flags]", About: "A test command.",
	Example: "test --http :80", EnvPrefix: "KT_", FileFlag: "config", Output: new(strings.Builder)}

func newConfig(t *testing.T) *testConfig {
	t.Helper()
	c := &testConfig{}
	if err := Defaults(c); err != nil {
		t.Fatal(err)
	}
	return c
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "test.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	c := newConfig(t)
	want := testConfig{HTTP: "127.0.0.1:8080", Data: "data", Window: 30 * time.Second, Quota: 10, Rate: 2.5}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("defaults %+v, want %+v", *c, want)
	}
	type badDefault struct {
		N int `yaml:"n" default:"ten"`
	}
	if err := Defaults(&badDefault{}); err == nil || !strings.Contains(err.Error(), "default of n") {
		t.Errorf("a bad default tag gave %v", err)
	}
}

// TestPrecedence: file < environment < flags, each layer replacing only the
// settings it names.
func TestPrecedence(t *testing.T) {
	path := writeFile(t, "http: 127.0.0.1:7000\ndata: /from/file\nresume-window: 10s\nquota: 3\n")
	t.Setenv("KT_DATA", "/from/env")
	t.Setenv("KT_RESUME_WINDOW", "20s")
	c := newConfig(t)
	if _, err := Load(c, testCmd, []string{"--config", path, "--resume-window", "45s"}); err != nil {
		t.Fatal(err)
	}
	for _, g := range []struct{ name, got, want string }{
		{"http (file only)", c.HTTP, "127.0.0.1:7000"},
		{"data (file, env)", c.Data, "/from/env"},
		{"resume-window (file, env, flag)", c.Window.String(), "45s"},
		{"quota (file)", fmt.Sprint(c.Quota), "3"},
		{"rate (default)", fmt.Sprint(c.Rate), "2.5"},
	} {
		if g.got != g.want {
			t.Errorf("%s = %q, want %q", g.name, g.got, g.want)
		}
	}
}

func TestFileFromEnvironment(t *testing.T) {
	t.Setenv("KT_CONFIG", writeFile(t, "quota: 7\n"))
	c := newConfig(t)
	if _, err := Load(c, testCmd, nil); err != nil || c.Quota != 7 {
		t.Fatalf("quota %d, err %v; want 7 from the file KT_CONFIG names", c.Quota, err)
	}
}

// TestLists: a YAML list or a comma-separated value, replaced as a whole by
// a higher layer, then grown by repeating the flag.
func TestLists(t *testing.T) {
	for _, c := range []struct {
		file string
		env  string
		args []string
		want []string
	}{
		{"allow-origin: [https://a.example, https://b.example]\n", "", nil, []string{"https://a.example", "https://b.example"}},
		{"allow-origin: https://a.example, https://b.example\n", "", nil, []string{"https://a.example", "https://b.example"}},
		{"allow-origin:\n  - https://a.example\n", "https://env.example,https://env2.example", nil, []string{"https://env.example", "https://env2.example"}},
		{"", "https://env.example", []string{"--allow-origin", "https://cli.example", "--allow-origin=https://cli2.example"}, []string{"https://cli.example", "https://cli2.example"}},
		{"allow-origin: [\"x,y\"]\n", "", nil, []string{"x,y"}},
	} {
		if c.env != "" {
			t.Setenv("KT_ALLOW_ORIGIN", c.env)
		} else {
			os.Unsetenv("KT_ALLOW_ORIGIN")
		}
		cfg := newConfig(t)
		args := append([]string{"--config", writeFile(t, c.file)}, c.args...)
		if _, err := Load(cfg, testCmd, args); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(cfg.Origins, c.want) {
			t.Errorf("file %q env %q args %q: got %q, want %q", c.file, c.env, c.args, cfg.Origins, c.want)
		}
	}
}

// TestStrictFile: every problem of the file is an error naming the file,
// the line and the key, all reported at once, and the good keys still
// apply.
func TestStrictFile(t *testing.T) {
	path := writeFile(t, strings.Join([]string{
		"htp: 1",                 // 1: unknown key
		"resume-window: soon",    // 2: wrong type (not a duration)
		"quota: [1, 2]",          // 3: a list for a single value
		"http:",                  // 4: a nested mapping for a single value
		"  host: 0.0.0.0",        // 5
		"  port: 8080",           // 6
		"log-json: maybe",        // 7: not a bool
		"allow-origin: [{a: 1}]", // 8: a mapping inside a list
		"log-level: loud",        // 9: the TextUnmarshaler refuses
		"data: /from/file",       // 10: fine
		"quota: 4",               // 11: repeated
		"rate: 1e400",            // 12: out of range
	}, "\n")+"\n")
	c := newConfig(t)
	_, err := Load(c, testCmd, []string{"--config", path})
	if err == nil {
		t.Fatal("a bad file was accepted")
	}
	for _, want := range []string{
		path + ":1: htp: unknown key",
		path + `:2: resume-window: "soon" is not a duration`,
		path + ":3: quota: want a single value, got a list",
		path + ":4: http: want a single value, got a mapping",
		path + `:7: log-json: "maybe" is not true or false`,
		path + ":8: allow-origin: line 8: want a list of single values, got a mapping in it",
		path + ":9: log-level: slog: level string \"loud\": unknown name",
		path + ":11: quota: repeated (first on line 3)",
		path + `:12: rate: "1e400" is not a number`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q:\n%v", want, err)
		}
	}
	_, err = Load(c, testCmd, []string{"--config", writeFile(t, "allow-origin: {a: https://x.example}\n")})
	if err == nil || !strings.Contains(err.Error(), ":1: allow-origin: want a list or a single value, got a mapping") {
		t.Errorf("a mapping for a list: %v", err)
	}
	if c.Data != "/from/file" {
		t.Errorf("data = %q: the good key was not applied", c.Data)
	}
	if c.HTTP != "127.0.0.1:8080" {
		t.Errorf("http = %q: a bad value changed the setting", c.HTTP)
	}
}

func TestFileShape(t *testing.T) {
	for body, want := range map[string]string{
		"- a\n- b\n":                       ":1: want a mapping of settings",
		"a: [\n":                           "yaml:",
		"data: a\n---\nb: 1\n":             "want one YAML document",
		strings.Repeat("#", MaxFileSize+1): "over 1048576 bytes",
	} {
		_, err := Load(newConfig(t), testCmd, []string{"--config", writeFile(t, body)})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("file %.20q: error %v, want %q", body, err, want)
		}
	}
	c := newConfig(t)
	if _, err := Load(c, testCmd, []string{"--config", writeFile(t, "# only a comment\n")}); err != nil || c.HTTP != "127.0.0.1:8080" {
		t.Errorf("a file of comments: %v, http %q", err, c.HTTP)
	}
	if _, err := Load(c, testCmd, []string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}); err == nil {
		t.Error("a missing file was accepted")
	}
}

func TestEnvironment(t *testing.T) {
	t.Setenv("KT_QUOTA", "twelve")
	t.Setenv("KT_LOG_JSON", "true")
	t.Setenv("TEST_TOKEN", "tok")
	t.Setenv("KT_SECRET", "ignored: the setting has no environment twin")
	t.Setenv("KT_TOKEN", "ignored: the env tag names another variable")
	c := newConfig(t)
	_, err := Load(c, testCmd, nil)
	if err == nil || !strings.Contains(err.Error(), `KT_QUOTA: "twelve" is not a whole number`) {
		t.Fatalf("error %v, want one naming KT_QUOTA", err)
	}
	if !c.Log.JSON || c.Token != "tok" || c.Secret != "" {
		t.Errorf("log-json %v, token %q, secret %q", c.Log.JSON, c.Token, c.Secret)
	}
}

// TestValidateJoins: Validate runs after every layer, and its problems come
// with those of the file and the environment.
func TestValidateJoins(t *testing.T) {
	t.Setenv("KT_QUOTA", "x")
	c := newConfig(t)
	c.validate = func(c *testConfig) error {
		if c.Data == "/from/flag" {
			return errors.New("data: not there")
		}
		return nil
	}
	_, err := Load(c, testCmd, []string{"--data", "/from/flag"})
	if err == nil || !strings.Contains(err.Error(), "data: not there") || !strings.Contains(err.Error(), "KT_QUOTA") {
		t.Fatalf("error %v, want both problems", err)
	}
}

func TestCommandLine(t *testing.T) {
	c := newConfig(t)
	rest, err := Load(c, testCmd, []string{"add", "alice", "--log-json", "--quota=2", "bob", "--", "--not-a-flag"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"add", "alice", "bob", "--not-a-flag"}; !reflect.DeepEqual(rest, want) {
		t.Errorf("positional %q, want %q", rest, want)
	}
	if !c.Log.JSON || c.Quota != 2 {
		t.Errorf("log-json %v quota %d", c.Log.JSON, c.Quota)
	}
	if _, err := Load(newConfig(t), testCmd, []string{"--nope"}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown flag: %v", err)
	}
	if _, err := Load(newConfig(t), testCmd, []string{"--quota", "x"}); err == nil || !strings.Contains(err.Error(), `"x" is not a whole number`) {
		t.Errorf("bad flag value: %v", err)
	}
}

// TestHelp: --help (and the usage a mistyped flag prints) shows each
// setting's default from its tag, never what the environment or the file
// set: help goes to logs, and some settings are secrets.
func TestHelp(t *testing.T) {
	var out strings.Builder
	cmd := testCmd
	cmd.Output = &out
	t.Setenv("TEST_TOKEN", "do-not-log-this-token")
	t.Setenv("KT_HTTP", "0.0.0.0:9999")
	_, err := Load(newConfig(t), cmd, []string{"--help"})
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	for _, want := range []string{
		"Usage: test [flags]", "A test command.", "each also read from its KT_* environment variable",
		"--config FILE (KT_CONFIG)", "--http (KT_HTTP)\n    \tlisten address (default 127.0.0.1:8080)",
		"--token (TEST_TOKEN)", "--secret\n", "--log-level (KT_LOG_LEVEL)\n    \tlog level (default info)",
		"Example:\n  test --http :80",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
	for _, secret := range []string{"do-not-log-this-token", "9999"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("help shows %q, a value from the environment:\n%s", secret, out.String())
		}
	}
}

// TestExampleLoads: the example, uncommented, is a valid file that sets
// every setting to its default.
func TestExampleLoads(t *testing.T) {
	c := newConfig(t)
	c.Origins = []string{"https://a.example", "https://b.example"}
	var b strings.Builder
	if err := Example(&b, c, testCmd); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# listen address (env KT_HTTP)\n# http: 127.0.0.1:8080\n", "# allow-origin: ['https://a.example', 'https://b.example']\n", "# secret: \"\"\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("example lacks %q:\n%s", want, b.String())
		}
	}
	var lines []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "# ") && !strings.Contains(l, "(env ") && !strings.Contains(l, "no environment twin") {
			lines = append(lines, strings.TrimPrefix(l, "# "))
		}
	}
	if len(lines) != len(settings(c, "")) {
		t.Fatalf("%d settings in the example, want %d:\n%s", len(lines), len(settings(c, "")), b.String())
	}
	got := &testConfig{}
	if _, err := Load(got, testCmd, []string{"--config", writeFile(t, strings.Join(lines, "\n"))}); err != nil {
		t.Fatalf("the example does not load: %v\n%s", err, strings.Join(lines, "\n"))
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("the example loads as %+v, want %+v", got, c)
	}
}

// TestMisspeltEnvironment: a variable with the command's prefix that is
// one or two letters from a setting's is named, with the setting it was
// likely meant for, when Load runs; a setting's own variable, the file's,
// another command's (SharedKeys), one far from every setting and one
// without the prefix are not. A misspelt variable was ignored without a
// word, and the server listened where the operator did not mean.
func TestMisspeltEnvironment(t *testing.T) {
	cmd := testCmd
	cmd.SharedKeys = func(key string) bool { return key == "other-command-setting" }
	env := []string{"KT_HTPP=127.0.0.1:9090", "KT_RESUME_WINDOWS=1m", "KT_HTTP=x", "KT_CONFIG=x",
		"KT_OTHER_COMMAND_SETTING=x", "KT_SOMETHING_ELSE_ENTIRELY=x", "XKT_HTTP=x", "TEST_TOKN=x"}
	got := cmd.Misspelt(&testConfig{}, env)
	want := []string{
		"KT_HTPP is not a setting, and is ignored: did you mean KT_HTTP?",
		"KT_RESUME_WINDOWS is not a setting, and is ignored: did you mean KT_RESUME_WINDOW?",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("warnings %q, want %q", got, want)
	}

	t.Setenv("KT_DAT", "/tmp/x")
	out := new(strings.Builder)
	cmd.Output = out
	if _, err := Load(newConfig(t), cmd, nil); err != nil {
		t.Fatal(err)
	}
	if w := "test: KT_DAT is not a setting, and is ignored: did you mean KT_DATA?\n"; out.String() != w {
		t.Errorf("Load wrote %q, want %q", out.String(), w)
	}
}
