package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testFlags() (*flag.FlagSet, *serveOptions) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	return fs, serveFlags(fs)
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "khadga.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigPrecedence(t *testing.T) {
	path := writeConfig(t, "http: 127.0.0.1:7000\nresume-window: 10s\ndata: /from/file\nallow-origin: [https://a.example, https://b.example]\n")
	t.Setenv("KHADGA_DATA", "/from/env")
	fs, o := testFlags()
	if err := parseFlags(fs, []string{"--config", path, "--resume-window", "45s"}); err != nil {
		t.Fatal(err)
	}
	if o.http != "127.0.0.1:7000" {
		t.Errorf("http = %q, want the file's value", o.http)
	}
	if o.dataDir != "/from/env" {
		t.Errorf("data = %q, want the environment's value over the file's", o.dataDir)
	}
	if o.resumeWindow != 45*time.Second {
		t.Errorf("resume-window = %v, want the command line's value", o.resumeWindow)
	}
	if got := o.origins.String(); got != "https://a.example,https://b.example" {
		t.Errorf("allow-origin = %q", got)
	}
}

func TestConfigListOverride(t *testing.T) {
	t.Setenv("KHADGA_ALLOW_ORIGIN", "https://env.example")
	fs, o := testFlags()
	if err := parseFlags(fs, []string{"--allow-origin", "https://cli.example"}); err != nil {
		t.Fatal(err)
	}
	if got := o.origins.String(); got != "https://cli.example" {
		t.Fatalf("allow-origin = %q, want the command line's list only", got)
	}
}

func TestConfigReportsEveryProblem(t *testing.T) {
	path := writeConfig(t, "htp: 1\nresume-window: soon\nturn-colour: blue\n")
	t.Setenv("KHADGA_ACCESS_TTL", "forever")
	fs, _ := testFlags()
	err := parseFlags(fs, []string{"--config=" + path})
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{`unknown key "htp"`, `unknown key "turn-colour"`, "resume-window", "KHADGA_ACCESS_TTL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
}

func TestExampleConfigParses(t *testing.T) {
	fs, _ := testFlags()
	turnFlags(fs)
	var b strings.Builder
	exampleConfig(&b, fs)
	// Uncomment every setting: the example must be a valid config as is.
	var lines []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "# ") && strings.Contains(l, ": ") && !strings.Contains(l, "(env ") {
			lines = append(lines, strings.TrimPrefix(l, "# "))
		}
	}
	if len(lines) < 10 {
		t.Fatalf("example has only %d settings:\n%s", len(lines), b.String())
	}
	path := writeConfig(t, strings.Join(lines, "\n")+"\n")
	fs2, _ := testFlags()
	turnFlags(fs2)
	if err := parseFlags(fs2, []string{"--config", path}); err != nil {
		t.Fatalf("the example config does not load: %v\n%s", err, strings.Join(lines, "\n"))
	}
}
