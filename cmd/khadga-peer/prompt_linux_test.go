package main

import (
	"context"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/khadga/khadga/internal/ptytest"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestCtrlCAtPrompt: Ctrl-C at a prompt (the password's, without echo, or
// the username's) ends the command at once, exit 1, with the terminal's
// echo back on. khadga-peer catches SIGINT to cancel its context, and Go
// restarts the read(2) the signal interrupted: the prompt used to wait
// for Enter, echo off, however often Ctrl-C was pressed.
func TestCtrlCAtPrompt(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	for _, tc := range []struct {
		name, prompt string
		args         []string
	}{
		{"password", "password for alice: ", []string{"login", "--server", s.URL, "--user", "alice"}},
		{"new password", "password for zoe: ", []string{"register", "--server", s.URL, "--user", "zoe"}},
		{"username", "username: ", []string{"login", "--server", s.URL}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The bound of a command that hangs at its prompt.
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			ctl, tty := ptytest.Open(t)
			defer tty.Close()
			scr := ptytest.Watch(t, ctl)
			cmd := peerCmd(ctx, t, t.TempDir(), "", tc.args...)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			scr.Expect(t, 0, tc.prompt, 10*time.Second)
			if err := cmd.Process.Signal(os.Interrupt); err != nil { // what Ctrl-C at the terminal sends
				t.Fatal(err)
			}
			if code := exitCode(t, cmd.Wait()); code != exitError {
				t.Errorf("exit %d after Ctrl-C at the prompt, want %d:\n%s", code, exitError, scr.String())
			}
			tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
			if err != nil {
				t.Fatal(err)
			}
			if tio.Lflag&unix.ECHO == 0 {
				t.Error("the terminal's echo is still off")
			}
		})
	}
}
