package main

import (
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

// TestHelpListsEveryCommand: `khadga help` names every command, so that
// a new one cannot be left out of it; `khadga help CMD` is CMD's --help,
// and an unknown name says what the commands are.
func TestHelpListsEveryCommand(t *testing.T) {
	var out strings.Builder
	if err := runHelp(context.Background(), &out, nil); err != nil {
		t.Fatal(err)
	}
	for name := range commands {
		if !strings.Contains(out.String(), "\n  "+name+" ") {
			t.Errorf("khadga help does not list %q:\n%s", name, out.String())
		}
	}
	if err := runHelp(context.Background(), &out, []string{"keys"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("khadga help keys: %v, want keys --help (flag.ErrHelp)", err)
	}
	err := runHelp(context.Background(), &out, []string{"nope"})
	if err == nil || !strings.Contains(err.Error(), `unknown command "nope"`) || !strings.Contains(err.Error(), "turn-secret") {
		t.Errorf("khadga help nope: %v", err)
	}
}
