package main

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestEveryFlagIsDocumented runs each command's --help and checks that
// docs/client.md names every flag it lists, so that a new flag is not
// left for users to find in the help alone.
func TestEveryFlagIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/client.md")
	if err != nil {
		t.Fatal(err)
	}
	flagLine := regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`)
	seen := 0
	for _, c := range commands {
		var out strings.Builder
		e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &out, configDir: t.TempDir()}
		if code := run(context.Background(), []string{c.name, "--help"}, e); code != exitOK {
			t.Fatalf("%s --help exited %d:\n%s", c.name, code, out.String())
		}
		for _, m := range flagLine.FindAllStringSubmatch(out.String(), -1) {
			seen++
			if !regexp.MustCompile(`--` + m[1] + `\b`).Match(doc) {
				t.Errorf("khadga-peer %s --%s is not in docs/client.md", c.name, m[1])
			}
		}
	}
	if seen < 30 {
		t.Fatalf("found only %d flags in the commands' help; has its layout changed?", seen)
	}
}
