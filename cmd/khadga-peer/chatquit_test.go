package main

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/client"
)

// started is a trickle that says when the sender first read from it:
// the receiver has accepted, and its partial file exists.
type started struct {
	*trickle
	first chan struct{}
	n     int
}

func (s *started) Read(p []byte) (int, error) {
	if s.n++; s.n == 1 {
		close(s.first)
	}
	return s.trickle.Read(p)
}

// TestChatQuitRemovesPartialFile: /quit (or Ctrl-C) while a file accepted
// with /accept is still arriving cancels its transfer, tells the sender,
// and removes the partial file before the process exits. Before, chat
// returned at once and the process exited under the transfer's goroutine:
// the sender saw only a closed connection, and the .part file in --dir
// was removed only if that goroutine won the race with the exit.
func TestChatQuitRemovesPartialFile(t *testing.T) {
	ctx, bob, room := aliceAndBob(t, "lounge")
	inbox := t.TempDir()
	cmd, in, out := startChat(ctx, t, bob, "lounge", "--loopback", "--dir", inbox)
	waitLine(t, out, "connected to alice")
	peer := room.MembersByUser("bob")[0].Peer

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	stop := make(chan struct{})
	defer close(stop)
	src := &started{trickle: &trickle{tick: tick.C, done: stop}, first: make(chan struct{})}
	tr, err := room.SendFile(ctx, peer, "trickle.bin", src, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	waitLine(t, out, "offers trickle.bin")
	io.WriteString(in, "/accept\n")
	select {
	case <-src.first:
	case <-ctx.Done():
		t.Fatal("bob never accepted the file")
	}
	io.WriteString(in, "/quit\n")
	if code := exitCode(t, cmd.Wait()); code != exitOK {
		t.Fatalf("chat exited %d", code)
	}
	if left, _ := os.ReadDir(inbox); len(left) != 0 {
		t.Errorf("files left in --dir after /quit: %v", left)
	}
	err = tr.Wait(ctx)
	if !errors.Is(err, client.ErrTransferInterrupted) || !strings.Contains(err.Error(), "receiver cancelled") {
		t.Errorf("the sender's transfer ended with %v, want the receiver's cancellation", err)
	}
}
