package e2e_test

import (
	"strings"
	"testing"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestSignInWhileTheServerIsDown: the page is open, the server stops, and
// alice signs in. The form says the server cannot be reached, not the
// browser's bare "Failed to fetch".
func TestSignInWhileTheServerIsDown(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	s.Register(t, "alice", password)
	alice := openPage(t, s.URL, "alice")
	alice.do(chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "alice"), chromedp.SendKeys(chromedp.ID("password"), password))
	if err := s.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	alice.press("login")
	alice.waitFor("an error", `document.getElementById('signin-error').textContent !== ''`)
	if got := eval[string](alice, `document.getElementById('signin-error').textContent`); !strings.Contains(strings.ToLower(got), "cannot reach the server") {
		t.Errorf("sign-in error %q, want one that says the server cannot be reached", got)
	}
}

// TestSignInWhenTheSocketCannotOpen: the sign-in works but the WebSocket
// does not open (here the server refuses its ticket; behind a proxy that
// does not pass WebSockets it looks the same to a page, which sees no
// status). The form says so in words, with what to check.
func TestSignInWhenTheSocketCannotOpen(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	s.Register(t, "alice", password)
	alice := openPage(t, s.URL, "alice")
	intercept(t, alice, "*/api/ws-ticket", func(*fetch.EventRequestPaused) *fakeAnswer {
		return &fakeAnswer{200, `{"ticket":"forged-by-the-test","expires_in":30}`}
	})
	alice.do(chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "alice"), chromedp.SendKeys(chromedp.ID("password"), password))
	alice.press("login")
	alice.waitFor("an error", `document.getElementById('signin-error').textContent !== ''`)
	if got := eval[string](alice, `document.getElementById('signin-error').textContent`); !strings.Contains(got, "live connection") || !strings.Contains(got, "WebSocket") {
		t.Errorf("sign-in error %q, want one that says the live connection (WebSocket) did not open", got)
	}
}
