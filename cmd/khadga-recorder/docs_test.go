package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestEveryFlagIsDocumented runs --help and checks that docs/recorder.md
// names every flag it lists, so that a new flag is not left for users to
// find in the help alone.
func TestEveryFlagIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/recorder.md")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if code := run([]string{"--help"}, &out); code != 0 {
		t.Fatalf("--help exited %d:\n%s", code, out.String())
	}
	flags := regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`).FindAllStringSubmatch(out.String(), -1)
	if len(flags) < 15 {
		t.Fatalf("found only %d flags in the help; has its layout changed?\n%s", len(flags), out.String())
	}
	for _, m := range flags {
		if !regexp.MustCompile(`--` + m[1] + `\b`).Match(doc) {
			t.Errorf("khadga-recorder --%s is not in docs/recorder.md", m[1])
		}
	}
}
