package client

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestE2ESignedOut: the sign-in of a connected client is ended on the
// server (here by the logout of its refresh token). The server closes the
// session, the reconnect is refused 401, and so is the refresh: the
// client stops reconnecting and says so, once, with ErrSignedOut
// (SignedOut, then RoomLost and the room's Events closing), and a request
// fails at once with it. (It once retried for ever, logging at Info.)
func TestE2ESignedOut(t *testing.T) {
	ts := startServer(t, false)
	c := ts.newClient(t, "alice")
	r := join(t, c, "lab")
	if code, body := ts.Post(t, "/api/logout", map[string]string{"refresh_token": c.Tokens().Refresh}); code != 204 {
		t.Fatalf("logout: %d %s", code, body)
	}
	if out := waitEvent[*SignedOut](t, c.events, nil); !errors.Is(out.Err, ErrSignedOut) || !errors.Is(out.Err, ErrUnauthorized) {
		t.Fatalf("SignedOut.Err = %v, want ErrSignedOut and the refresh's ErrUnauthorized", out.Err)
	}
	if lost := waitEvent[*RoomLost](t, r.events, nil); !errors.Is(lost.Err, ErrSignedOut) {
		t.Fatalf("RoomLost.Err = %v, want ErrSignedOut", lost.Err)
	}
	waitClosed(t, r.events)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := c.Join(ctx, "other"); !errors.Is(err, ErrSignedOut) {
		t.Fatalf("join after the sign-out: %v, want ErrSignedOut", err)
	}
}

// waitClosed waits until ch is closed, dropping what comes before.
func waitClosed(t *testing.T, ch <-chan Event) {
	t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case _, open := <-ch:
			if !open {
				return
			}
		case <-timer.C:
			t.Fatal("timed out waiting for the event channel to close")
		}
	}
}

// TestConcurrentRefreshesKeepTheSignIn: refreshes that start at once (the
// refresh loop's, and a reconnect's after a 401) present the refresh token
// one at a time. Two that presented the same token would be taken for
// reuse, and the server would end the sign-in everywhere.
func TestConcurrentRefreshesKeepTheSignIn(t *testing.T) {
	ts := startServer(t, false)
	c := ts.newClient(t, "alice")
	first := c.Tokens()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- c.refreshNow() })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a concurrent refresh: %v", err)
		}
	}
	if c.Tokens().Refresh == first.Refresh {
		t.Fatal("no refresh rotated the tokens")
	}
	if err := c.refreshNow(); err != nil {
		t.Fatalf("a refresh after them: %v (the sign-in was ended as reuse)", err)
	}
}
