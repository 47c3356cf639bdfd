package e2e_test

import (
	"strings"
	"testing"

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
	if got := eval[string](alice, `document.getElementById('signin-error').textContent`); !strings.Contains(got, "cannot reach the server") {
		t.Errorf("sign-in error %q, want one that says the server cannot be reached", got)
	}
}
