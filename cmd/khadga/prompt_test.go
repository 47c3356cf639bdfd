package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/ptytest"
)

// TestUserAddAsksOnTerminal: at a terminal, `khadga user add` shows a
// prompt, reads the password twice without echo, and refuses two that
// differ; the account works with that password.
func TestUserAddAsksOnTerminal(t *testing.T) {
	dir := t.TempDir()
	add := func(typed ...string) (string, error) {
		ctl, tty := ptytest.Open(t)
		scr := ptytest.Watch(t, ctl)
		cmd := exec.Command(khadgaBin, "user", "add", "carol")
		cmd.Dir, cmd.Stdin, cmd.Stdout, cmd.Stderr = dir, tty, tty, tty
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		tty.Close() // the child holds its own copy
		at := 0
		for i, s := range typed {
			at = scr.Expect(t, at, []string{"password for carol: ", "again: "}[i], 30*time.Second)
			ctl.WriteString(s + "\n")
		}
		err := cmd.Wait()
		return scr.Closed(t, 10*time.Second), err
	}
	shown, err := add("first long password", "second long password")
	if err == nil || !strings.Contains(shown, "differ") {
		t.Fatalf("two different passwords: %v\n%s", err, shown)
	}
	shown, err = add("a long enough password", "a long enough password")
	if err != nil {
		t.Fatalf("user add: %v\n%s", err, shown)
	}
	if strings.Contains(shown, "long enough") {
		t.Fatalf("the password was echoed:\n%s", shown)
	}
	p := startServe(t, dir)
	if code, body := post(t, p.url+"/api/login", `{"username":"carol","password":"a long enough password"}`); code != 200 {
		t.Fatalf("login with the typed password: %d %s", code, body)
	}
	p.stop(t)
}

// TestBackupRefusesATerminal: `khadga backup -` with standard output on a
// terminal refuses, rather than write the store's bytes (password hashes
// and keys among them) to the screen, as `restore -` refuses to read one.
func TestBackupRefusesATerminal(t *testing.T) {
	dir := t.TempDir()
	if out, err := run(t, dir, "a long admin password\n", "user", "add", "root"); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	ctl, tty := ptytest.Open(t)
	scr := ptytest.Watch(t, ctl)
	cmd := exec.Command(khadgaBin, "backup", "-")
	cmd.Dir, cmd.Stdin, cmd.Stdout, cmd.Stderr = dir, tty, tty, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close() // the child holds its own copy
	err := cmd.Wait()
	shown := scr.Closed(t, 10*time.Second)
	if err == nil || !strings.Contains(shown, "standard output is a terminal") {
		t.Fatalf("backup - to a terminal: %v; %d bytes shown, ending %q", err, len(shown), shown[max(0, len(shown)-200):])
	}
}
