package main

import (
	"context"
	"strings"
	"testing"

	"github.com/khadga/khadga/internal/doccheck"
)

// TestEveryFlagIsDocumented runs each command's --help and checks that
// docs/client.md names every flag it lists, so that a new flag is not
// left for users to find in the help alone.
func TestEveryFlagIsDocumented(t *testing.T) {
	seen := 0
	for _, c := range commands {
		var out strings.Builder
		e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &out, configDir: t.TempDir()}
		if code := run(context.Background(), []string{c.name, "--help"}, e); code != exitOK {
			t.Fatalf("%s --help exited %d:\n%s", c.name, code, out.String())
		}
		seen += doccheck.FlagsDocumented(t, "../../docs/client.md", "khadga-peer "+c.name, out.String(), 0)
	}
	if seen < 30 {
		t.Fatalf("found only %d flags in the commands' help; has its layout changed?", seen)
	}
}
