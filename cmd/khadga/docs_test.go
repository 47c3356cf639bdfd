package main

import (
	"bufio"
	"errors"
	"flag"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/khadga/khadga/internal/config"
	"github.com/khadga/khadga/internal/doccheck"
)

// TestEveryMetricIsDocumented finds every metric name in the server's
// source and checks that docs/operations.md lists it. Names the source
// builds from a prefix are checked on a running node instead
// (metricsDocumented, from TestServeOnNATS).
func TestEveryMetricIsDocumented(t *testing.T) {
	full := regexp.MustCompile(`"(khadga_[a-z_]+)"`)
	// turn/metrics.go builds names from Namespace "khadga", Subsystem "turn".
	turnName := regexp.MustCompile(`Subsystem: sub, Name: "([a-z_]+)"`)
	var names []string
	for _, src := range metricSources(t) {
		for _, m := range full.FindAllStringSubmatch(src, -1) {
			if !strings.HasSuffix(m[1], "_") { // a prefix
				names = append(names, m[1])
			}
		}
		for _, m := range turnName.FindAllStringSubmatch(src, -1) {
			names = append(names, "khadga_turn_"+m[1])
		}
	}
	if len(names) < 15 {
		t.Fatalf("found only %d metric names in the source; has the layout changed?", len(names))
	}
	undocumented(t, names)
}

// TestEveryMetricLabelIsDocumented finds every label value the server's
// source gives a metric as a literal (WithLabelValues("conns")) and
// checks that docs/operations.md names it, so that a new reason or
// result does not go unexplained. Values held in variables or constants
// are not seen.
func TestEveryMetricLabelIsDocumented(t *testing.T) {
	label := regexp.MustCompile(`WithLabelValues\(((?:"[a-z_]+", )*"[a-z_]+")\)`)
	var values []string
	for _, src := range metricSources(t) {
		for _, m := range label.FindAllStringSubmatch(src, -1) {
			for _, v := range strings.Split(m[1], ", ") {
				values = append(values, strings.Trim(v, `"`))
			}
		}
	}
	if len(values) < 20 {
		t.Fatalf("found only %d label values in the source; has the layout changed?", len(values))
	}
	doccheck.Documented(t, "../../docs/operations.md", "metric label value", values)
}

// metricSources returns the non-test Go files of the packages that
// register the server's metrics.
func metricSources(t *testing.T) []string {
	t.Helper()
	var globs []string
	for _, dir := range []string{"../../signaling", "../../signaling/hub", "../../turn", "../../signaling/store/kvstore",
		"../../internal/natsconn", "../../signaling/cluster"} {
		globs = append(globs, filepath.Join(dir, "*.go"))
	}
	return doccheck.Sources(t, globs...)
}

// undocumented fails the test for each name docs/operations.md does not
// list.
func undocumented(t *testing.T, names []string) {
	t.Helper()
	doccheck.Documented(t, "../../docs/operations.md", "metric", names)
}

// metricsDocumented scrapes a running server's /metrics (as a loopback
// client) and checks that docs/operations.md lists every khadga_ metric
// in it: the names the source builds from prefixes included. It returns
// the names it found.
func metricsDocumented(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	var names []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[1] == "TYPE" && strings.HasPrefix(f[2], "khadga_") {
			names = append(names, f[2])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	undocumented(t, names)
	found := make(map[string]bool, len(names))
	for _, n := range names {
		found[n] = true
	}
	return found
}

// commandFlags returns the flags of each khadga command, as its --help
// lists them ("config" takes none).
func commandFlags(t *testing.T) map[string]map[string]bool {
	t.Helper()
	flagLine := regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`)
	flags := map[string]map[string]bool{"config": {}}
	for _, c := range []struct {
		name string
		cfg  any
		cmd  config.Command
	}{
		{"serve", &serveConfig{}, serveCommand},
		{"turn", &turnCommandConfig{}, turnCommand},
		{"turn-credentials", &credentialsConfig{}, credentialsCommand},
		{"turn-secret", &adminConfig{}, turnSecretCommand},
		{"user", &userConfig{}, userCommand},
		{"token", &tokenConfig{}, tokenCommand},
		{"keys", &adminConfig{}, keysCommand},
		{"backup", &adminConfig{}, backupCommand},
		{"restore", &adminConfig{}, restoreCommand},
		{"migrate", &migrateConfig{}, migrateCommand},
	} {
		var out strings.Builder
		cmd := c.cmd
		cmd.Output = &out
		if _, err := load(c.cfg, cmd, []string{"--help"}); !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%s --help: %v", c.name, err)
		}
		flags[c.name] = map[string]bool{"help": true}
		for _, m := range flagLine.FindAllStringSubmatch(out.String(), -1) {
			flags[c.name][m[1]] = true
		}
	}
	if len(flags) != len(commands) {
		t.Fatalf("commandFlags knows %d commands, main %d: add the new one", len(flags), len(commands))
	}
	return flags
}

// docPages are the pages an operator follows; benchmarks.md records
// past runs and is left out.
func docPages(t *testing.T) map[string]string {
	t.Helper()
	files, _ := filepath.Glob("../../docs/*.md")
	pages := map[string]string{}
	for _, f := range append(files, "../../README.md") {
		if filepath.Base(f) == "benchmarks.md" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pages[filepath.Base(f)] = string(b)
	}
	return pages
}

// TestDocsShowOnlyRealFlags reads every khadga command line in the docs'
// code (blocks and `inline`) and checks that each flag it passes is a
// flag of that command: a renamed flag, or one shown on the wrong
// command, fails here before an operator's copy and paste does.
func TestDocsShowOnlyRealFlags(t *testing.T) {
	flags := commandFlags(t)
	block := regexp.MustCompile("(?s)```[a-z]*\n(.*?)```")
	inline := regexp.MustCompile("`([^`\n]+)`")
	seen := 0
	for page, text := range docPages(t) {
		var code []string
		for _, m := range block.FindAllStringSubmatch(text, -1) {
			code = append(code, strings.Split(strings.ReplaceAll(m[1], "\\\n", " "), "\n")...)
		}
		for _, m := range inline.FindAllStringSubmatch(block.ReplaceAllString(text, ""), -1) {
			code = append(code, m[1])
		}
		for _, line := range code {
			line, _, _ = strings.Cut(line, " #") // a comment
			for _, part := range regexp.MustCompile(`\||;|&&|\$\(`).Split(line, -1) {
				words := strings.Fields(part)
				for i := 0; i+1 < len(words); i++ {
					if words[i] != "khadga" && !strings.HasSuffix(words[i], "/cmd/khadga") {
						continue
					}
					cmd, rest := words[i+1], words[i+2:]
					if strings.HasPrefix(cmd, "--") {
						cmd, rest = "serve", words[i+1:]
					}
					if flags[cmd] == nil {
						continue // prose, or khadga the container or namespace
					}
					seen++
					for _, w := range rest {
						if w == "khadga" {
							break
						}
						name, ok := strings.CutPrefix(w, "--")
						if !ok || name == "" {
							continue
						}
						name, _, _ = strings.Cut(name, "=")
						if !flags[cmd][name] {
							t.Errorf("%s: `khadga %s` has no flag --%s: %s", page, cmd, name, strings.TrimSpace(line))
						}
					}
				}
			}
		}
	}
	if seen < 50 {
		t.Fatalf("found only %d khadga command lines in the docs; has the parser broken?", seen)
	}
}

// TestEveryFlagIsDocumented checks that each flag of each khadga command
// is named in the docs: as --flag, as its KHADGA_ variable, or as its
// YAML key (`flag`).
func TestEveryFlagIsDocumented(t *testing.T) {
	all := strings.Join(slices.Collect(maps.Values(docPages(t))), "\n")
	for cmd, names := range commandFlags(t) {
		for name := range names {
			env := "KHADGA_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
			if name != "help" && !strings.Contains(all, "--"+name) && !strings.Contains(all, env) && !strings.Contains(all, "`"+name+"`") {
				t.Errorf("khadga %s --%s is in no doc (README.md, docs/*.md)", cmd, name)
			}
		}
	}
}
