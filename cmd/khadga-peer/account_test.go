package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/khadga/khadga/internal/ptytest"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestRegisterThenTwoFactorLogin: register creates the account and signs
// in; a taken name is refused. With two-factor authentication on, login
// from a script fails with a hint at --totp-code, works with it, and at a
// terminal asks for the password (no echo) and then for the code.
func TestRegisterThenTwoFactorLogin(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	out, err := peerCmd(ctx, t, dir, password+"\n", "register", "--server", s.URL, "--user", "dave").CombinedOutput()
	if code := exitCode(t, err); code != exitOK || !strings.Contains(string(out), "registered and signed in as dave") {
		t.Fatalf("register exited %d:\n%s", code, out)
	}
	st, err := loadStore(dir)
	if err != nil || st.User != "dave" || st.Server != s.URL || st.Refresh == "" {
		t.Fatalf("stored %+v, %v", st, err)
	}
	out, err = peerCmd(ctx, t, t.TempDir(), password+"\n", "register", "--server", s.URL, "--user", "dave").CombinedOutput()
	if code := exitCode(t, err); code != exitAuth || !strings.Contains(string(out), "taken") {
		t.Fatalf("second register exited %d:\n%s", code, out)
	}
	out, err = peerCmd(ctx, t, t.TempDir(), "short\n", "register", "--server", s.URL, "--user", "erin").CombinedOutput()
	if code := exitCode(t, err); code != exitUsage || !strings.Contains(string(out), "password") {
		t.Fatalf("register with a short password exited %d:\n%s", code, out)
	}

	secret, recovery := enableTOTP(t, s, st.Access)
	out, err = peerCmd(ctx, t, t.TempDir(), password+"\n", "login", "--server", s.URL, "--user", "dave").CombinedOutput()
	if code := exitCode(t, err); code != exitAuth || !strings.Contains(string(out), "--totp-code") {
		t.Fatalf("login without a code exited %d:\n%s", code, out)
	}
	out, err = peerCmd(ctx, t, t.TempDir(), password+"\n", "login", "--server", s.URL, "--user", "dave", "--totp-code", "000000").CombinedOutput()
	if code := exitCode(t, err); code != exitAuth || !strings.Contains(string(out), "wrong") {
		t.Fatalf("login with a wrong code exited %d:\n%s", code, out)
	}
	// The confirmation spent this step's code; the next step's is accepted.
	code, _ := totp.GenerateCode(secret, time.Now().Add(30*time.Second))
	out, err = peerCmd(ctx, t, t.TempDir(), password+"\n", "login", "--server", s.URL, "--user", "dave", "--totp-code", code).CombinedOutput()
	if c := exitCode(t, err); c != exitOK || !strings.Contains(string(out), "signed in as dave") {
		t.Fatalf("login with the code exited %d:\n%s", c, out)
	}

	// At a terminal: password without echo, then the code (a recovery code here).
	ctl, tty := ptytest.Open(t)
	scr := ptytest.Watch(t, ctl)
	termDir := t.TempDir()
	cmd := peerCmd(ctx, t, termDir, "", "login", "--server", s.URL, "--user", "dave")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	at := scr.Expect(t, 0, "password for dave: ", 30*time.Second)
	ctl.WriteString(password + "\n")
	scr.Expect(t, at, "authenticator app", 30*time.Second)
	ctl.WriteString(recovery + "\n")
	if c := exitCode(t, cmd.Wait()); c != exitOK {
		t.Fatalf("terminal login exited %d:\n%s", c, scr.String())
	}
	if shown := scr.Closed(t, 10*time.Second); strings.Contains(shown, password) {
		t.Fatalf("the password was echoed:\n%s", shown)
	}
	if _, err := os.Stat(filepath.Join(termDir, storeFile)); err != nil {
		t.Fatalf("no tokens after the terminal login: %v", err)
	}
}

// enableTOTP turns two-factor authentication on through the API and
// returns the secret and one recovery code.
func enableTOTP(t *testing.T, s *signalingtest.Server, access string) (secret, recovery string) {
	t.Helper()
	auth := []string{"Authorization", "Bearer " + access}
	status, body := s.Post(t, "/api/totp/enroll", "{}", auth...)
	var enr struct{ Secret string }
	if status != 200 || json.Unmarshal(body, &enr) != nil {
		t.Fatalf("enroll: %d %s", status, body)
	}
	code, _ := totp.GenerateCode(enr.Secret, time.Now())
	status, body = s.Post(t, "/api/totp/confirm", map[string]string{"password": password, "code": code}, auth...)
	var conf struct {
		RecoveryCodes []string `json:"recovery_codes"`
	}
	if status != 200 || json.Unmarshal(body, &conf) != nil || len(conf.RecoveryCodes) == 0 {
		t.Fatalf("confirm: %d %s", status, body)
	}
	return enr.Secret, conf.RecoveryCodes[0]
}
