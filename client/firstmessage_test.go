package client

import (
	"fmt"
	"testing"
)

// TestFirstMessageOnConnect: a message sent the moment PeerConnected
// comes, before the other side has said it is connected, arrives; and so
// does one whose sender closes its client right after (a bot that greets
// and leaves). Close used to leave the room first: the other side closed
// its peer connection when the server told it, and the message went
// down with the association, never acknowledged.
func TestFirstMessageOnConnect(t *testing.T) {
	ts := startServer(t, false)
	for i := range 4 {
		closeAfter := i%2 == 1
		t.Run(fmt.Sprintf("close_%v_%d", closeAfter, i), func(t *testing.T) {
			alice, bob := ts.newClient(t, fmt.Sprintf("alice%d", i)), ts.newClient(t, fmt.Sprintf("bob%d", i))
			room := fmt.Sprintf("first%d", i)
			ra := join(t, alice, room)
			rb := join(t, bob, room)
			connected(t, ra, bob.Self().User)
			if n, err := ra.Send("hello"); err != nil || n != 1 {
				t.Fatalf("send: %d, %v", n, err)
			}
			if closeAfter {
				alice.Close()
			}
			if m := waitEvent[*Message](t, rb.events, nil); m.Text != "hello" {
				t.Fatalf("bob got %q", m.Text)
			}
		})
	}
}
