package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// trickle is a file source that gives a few bytes a tick: a sender that
// keeps its transfer alive, never silent long enough for the receiver's
// stall timeout, and never done.
type trickle struct {
	tick <-chan time.Time
	done <-chan struct{}
}

func (tr *trickle) Read(p []byte) (int, error) {
	select {
	case <-tr.tick:
	case <-tr.done:
		return 0, io.ErrUnexpectedEOF
	}
	n := min(len(p), 1024)
	clear(p[:n])
	return n, nil
}

// TestRecvTimeoutBoundsTransfer: `recv --timeout` bounds the whole
// command. Before, it bounded only the wait for an offer: a sender that
// trickled its file kept recv running past its --timeout for as long as
// it liked. Now recv cancels the transfer at the timeout, tells the
// sender, removes the partial file and exits 5.
func TestRecvTimeoutBoundsTransfer(t *testing.T) {
	ctx, bob, room := aliceAndBob(t, "drop")

	const timeout = 6 * time.Second
	inbox := t.TempDir()
	var out bytes.Buffer
	recv := peerCmd(ctx, t, bob, "", "recv", "--room", "drop", "--dir", inbox, "--loopback", "--timeout", timeout.String())
	recv.Stdout, recv.Stderr = &out, &out
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- recv.Wait() }()
	started := time.Now()

	var peer string
	for peer == "" {
		select {
		case ev := <-room.Events():
			if pc, ok := ev.(*client.PeerConnected); ok && pc.Member.User == "bob" {
				peer = pc.Member.Peer
			}
		case err := <-exited:
			t.Fatalf("recv exited (%v) before bob connected:\n%s", err, out.String())
		}
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	stop := make(chan struct{})
	defer close(stop)
	tr, err := room.SendFile(ctx, peer, "trickle.bin", &trickle{tick: tick.C, done: stop}, 1<<30)
	if err != nil {
		t.Fatal(err)
	}

	bound := time.NewTimer(timeout + 20*time.Second)
	defer bound.Stop()
	select {
	case err := <-exited:
		if code := exitCode(t, err); code != exitPeer || !strings.Contains(out.String(), "receiving trickle.bin from alice: not done within --timeout") {
			t.Fatalf("recv exited %d after %s, want %d for the trickled transfer:\n%s", code, time.Since(started), exitPeer, lastLines(out.String()))
		}
	case <-bound.C:
		_ = recv.Process.Kill()
		<-exited
		t.Fatalf("recv --timeout %s still running after %s: the trickled transfer is not bounded:\n%s", timeout, time.Since(started), lastLines(out.String()))
	}
	if left, _ := os.ReadDir(inbox); len(left) != 0 {
		t.Errorf("files left in the inbox: %v", left)
	}
	err = tr.Wait(ctx)
	if !errors.Is(err, client.ErrTransferInterrupted) || !strings.Contains(err.Error(), "receiver cancelled") {
		t.Errorf("the sender's transfer ended with %v, want the receiver's cancellation", err)
	}
}

// aliceAndBob starts a server, signs bob in for khadga-peer (his config
// directory) and alice with the client package, in room: the two sides
// of a transfer. The context bounds the test.
func aliceAndBob(t *testing.T, room string) (context.Context, string, *client.Room) {
	t.Helper()
	s := signalingtest.Start(t, signalingtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	bob := login(ctx, t, s, "bob")
	s.Register(t, "alice", password)
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	alice, err := client.Dial(ctx, s.URL, client.Credentials{Username: "alice", Password: password},
		client.WithSettingEngine(se), client.WithLogger(signalingtest.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alice.Close() })
	r, err := alice.Join(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, bob, r
}

// lastLines is the end of a command's output: a progress bar redraws
// its line many times.
func lastLines(s string) string { return s[max(0, len(s)-2000):] }
