package main

import (
	"strings"
	"testing"

	"github.com/khadga/khadga/internal/doccheck"
)

// TestEveryFlagIsDocumented runs --help and checks that docs/recorder.md
// names every flag it lists, so that a new flag is not left for users to
// find in the help alone.
func TestEveryFlagIsDocumented(t *testing.T) {
	var out strings.Builder
	if code := run([]string{"--help"}, &out); code != 0 {
		t.Fatalf("--help exited %d:\n%s", code, out.String())
	}
	doccheck.FlagsDocumented(t, "../../docs/recorder.md", "khadga-recorder", out.String(), 15)
}
