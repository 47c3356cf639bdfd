package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestSignedOutExitsAuth: a command whose sign-in the server ends while
// it runs (a logout elsewhere, a password changed by an administrator)
// exits exitAuth and says to sign in again, as a refused login does. It
// used to exit exitConnect ("left the room"), which tells a script to try
// again later, with tokens that can never work again.
func TestSignedOutExitsAuth(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := login(ctx, t, s, "alice")
	st, err := loadStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	chat, chatIn, chatOut := startChat(ctx, t, dir, "lab")
	defer chatIn.Close()
	waitLine(t, chatOut, "* joined lab")
	recv := peerCmd(ctx, t, dir, "", "recv", "--room", "lab", "--dir", t.TempDir())
	stderr, err := recv.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	recvOut := lineReader(t, stderr)
	waitLine(t, recvOut, "waiting for files")
	if code, body := s.Post(t, "/api/logout", map[string]string{"refresh_token": st.Refresh}); code != 204 {
		t.Fatalf("logout: %d %s", code, body)
	}
	var said strings.Builder
	for l := range recvOut { // until recv exits
		said.WriteString(l + "\n")
	}
	if code := exitCode(t, recv.Wait()); code != exitAuth || !strings.Contains(said.String(), "run khadga-peer login") {
		t.Errorf("recv exited %d after the sign-out, want %d saying to log in:\n%s", code, exitAuth, said.String())
	}
	for range chatOut { // until chat exits
	}
	if code := exitCode(t, chat.Wait()); code != exitAuth {
		t.Errorf("chat exited %d after the sign-out, want %d", code, exitAuth)
	}
}

// TestSharedSignInSurvivesRefresh: two processes of one sign-in (chat in
// one terminal, recv in another, both from the same tokens.json) each
// refresh the access token when it nears its end. Each used to present
// the refresh token it started with: the second presented a spent one,
// which the server takes for a stolen token, and it ended the sign-in:
// both processes were signed out at the first refresh. Now a rotation
// takes the one the other process stored. The access tokens live the
// shortest time the server allows (1 min), so the refreshes come after
// about 48 s.
func TestSharedSignInSurvivesRefresh(t *testing.T) {
	var cfg signaling.Config
	cfg.AccessTTL = time.Minute
	s := signalingtest.Start(t, signalingtest.Options{Config: cfg})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	dir := login(ctx, t, s, "alice")
	var logs []<-chan string
	for _, args := range [][]string{{"chat", "lab"}, {"recv", "--room", "lab", "--count", "0"}} {
		cmd := peerCmd(ctx, t, dir, "", append(args, "--log-level", "debug")...)
		cmd.Stdin = nil
		stdin, err := cmd.StdinPipe() // chat's ends when the test does
		if err != nil {
			t.Fatal(err)
		}
		defer stdin.Close()
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		logs = append(logs, lineReader(t, stderr))
	}
	for i, log := range logs {
		for refreshed := false; !refreshed; {
			select {
			case l, ok := <-log:
				if !ok {
					t.Fatalf("process %d ended before its refresh", i)
				}
				if strings.Contains(l, "signed out") || strings.Contains(l, "refresh") && strings.Contains(l, "401") {
					t.Fatalf("process %d lost the sign-in at the refresh: %s", i, l)
				}
				refreshed = strings.Contains(l, "access token refreshed")
			case <-ctx.Done():
				t.Fatalf("process %d never refreshed", i)
			}
		}
	}
	st, err := loadStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := s.Post(t, "/api/refresh", map[string]string{"refresh_token": st.Refresh}); code != 200 {
		t.Fatalf("the stored sign-in after both refreshes: %d %s", code, body)
	}
}
