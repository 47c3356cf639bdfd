package prompt

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/ptytest"
)

func TestReadLineLeavesTheRest(t *testing.T) {
	in := strings.NewReader("first\r\nsecond\nthird")
	for _, want := range []string{"first", "second", "third"} {
		got, err := ReadLine(in)
		if err != nil || got != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
	if _, err := ReadLine(in); !errors.Is(err, ErrNoInput) {
		t.Fatalf("at the end: %v, want ErrNoInput", err)
	}
	if _, err := ReadLine(strings.NewReader(strings.Repeat("x", MaxLine+1))); err == nil {
		t.Fatal("an endless line was accepted")
	}
}

// TestPipeIsSilent: from a pipe, nothing is written (no prompt in a script's output).
func TestPipeIsSilent(t *testing.T) {
	var out bytes.Buffer
	p, err := NewPassword(context.Background(), strings.NewReader("pw one\nnext"), &out, "password: ")
	if err != nil || p != "pw one" || out.Len() != 0 {
		t.Fatalf("got %q, %v, output %q", p, err, out.String())
	}
}

// TestTerminal: on a terminal the prompts show, the password does not
// echo, a mismatched second entry is refused, and a code echoes.
func TestTerminal(t *testing.T) {
	ctl, tty := ptytest.Open(t)
	scr := ptytest.Watch(t, ctl)
	type result struct {
		v   string
		err error
	}
	results := make(chan result, 3)
	go func() {
		defer tty.Close()
		p, err := NewPassword(context.Background(), tty, tty, "new password: ")
		results <- result{p, err}
		p, err = NewPassword(context.Background(), tty, tty, "new password: ")
		results <- result{p, err}
		p, err = Line(context.Background(), tty, tty, "code: ")
		results <- result{p, err}
	}()
	const wait = 10 * time.Second
	at := 0
	for _, step := range []struct{ prompt, typed string }{
		{"new password: ", "hunter2 is long"}, {"again: ", "hunter2 is long"},
		{"new password: ", "nope"}, {"again: ", "not the same"},
		{"code: ", "123456"},
	} {
		at = scr.Expect(t, at, step.prompt, wait)
		ctl.WriteString(step.typed + "\n")
	}
	if r := <-results; r.err != nil || r.v != "hunter2 is long" {
		t.Fatalf("got %q, %v", r.v, r.err)
	}
	if r := <-results; r.err == nil || !strings.Contains(r.err.Error(), "differ") {
		t.Fatalf("mismatch: %q, %v", r.v, r.err)
	}
	if r := <-results; r.err != nil || r.v != "123456" {
		t.Fatalf("code %q, %v", r.v, r.err)
	}
	shown := scr.Closed(t, wait)
	if strings.Contains(shown, "hunter2") || strings.Contains(shown, "same") {
		t.Errorf("password echoed: %q", shown)
	}
	if !strings.Contains(shown, "123456") {
		t.Errorf("the code should echo: %q", shown)
	}
}
