package main

import (
	"context"
	"strings"
	"testing"
	"time"

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
