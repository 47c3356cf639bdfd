// Package doccheck lets tests check that the docs name what the code
// has: metrics and their labels, error codes, SDK events.
package doccheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Sources returns the contents of the files that match the glob
// patterns, Go test files left out.
func Sources(t testing.TB, patterns ...string) []string {
	t.Helper()
	var srcs []string
	for _, p := range patterns {
		files, err := filepath.Glob(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			srcs = append(srcs, string(b))
		}
	}
	return srcs
}

// Documented fails the test for each name that the markdown file doc
// does not show in backquotes: `name`, or `name{...}` (a metric with
// its labels). what says what a name is, for the message.
func Documented(t testing.TB, doc, what string, names []string) {
	t.Helper()
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !strings.Contains(string(b), "`"+n+"`") && !strings.Contains(string(b), "`"+n+"{") {
			t.Errorf("%s %s is not in %s", what, n, doc)
		}
	}
}

// helpFlag is a flag line of a command's --help: two spaces, then --name.
var helpFlag = regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`)

// FlagsDocumented fails the test for each flag that help (a command's
// --help) lists and the markdown file doc never names as --flag, and
// when help lists fewer than least flags (its layout changed, and the
// check would pass on nothing). It returns how many flags help listed.
func FlagsDocumented(t testing.TB, doc, command, help string, least int) int {
	t.Helper()
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	flags := helpFlag.FindAllStringSubmatch(help, -1)
	if len(flags) < least {
		t.Fatalf("%s: found only %d flags in the help; has its layout changed?\n%s", command, len(flags), help)
	}
	for _, m := range flags {
		if !regexp.MustCompile(`--` + m[1] + `\b`).Match(b) {
			t.Errorf("%s --%s is not in %s", command, m[1], doc)
		}
	}
	return len(flags)
}
