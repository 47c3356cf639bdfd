package e2e_test

import (
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestLeaveKeepsKeyboardFocus: pressing Leave from the keyboard removes the
// button, and focus goes to the room name box (where the next room is
// joined), not back to the start of the page.
func TestLeaveKeepsKeyboardFocus(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.join("lobby")
	alice.do(chromedp.Focus(chromedp.CSS(`#rooms section[data-room="lobby"] button`)), chromedp.KeyEvent(" "))
	alice.waitFor("lobby off the page", `!document.querySelector('#rooms section[data-room="lobby"]')`)
	if got := eval[string](alice, `document.activeElement.id || document.activeElement.tagName`); got != "room-name" {
		t.Errorf("focus is on %s after Leave, want room-name", got)
	}
}

// TestSendWithoutARoomSaysSo: a message typed and sent (Enter) while in no
// room is not dropped without a word: the page says to join a room first,
// and the text stays in the box.
func TestSendWithoutARoomSaysSo(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.do(chromedp.SendKeys(chromedp.ID("chat-input"), "anyone here?"+kb.Enter))
	alice.waitFor("the notice", `[...document.querySelectorAll('#chat-log li.notice')].some(e => e.textContent.includes('Join a room'))`)
	if got := eval[string](alice, `document.getElementById('chat-input').value`); got != "anyone here?" {
		t.Errorf("the box holds %q after the refusal", got)
	}
}

// TestSkipLinkOnlyWhenSignedIn: the sign-in form has no chat to skip to,
// so the first Tab there reaches the username box (the link, there,
// led nowhere and left the next Tab on the page's body); signed in,
// "Skip to chat" puts focus in the message box.
func TestSkipLinkOnlyWhenSignedIn(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	focused := `document.activeElement.id || document.activeElement.textContent`
	alice.do(chromedp.WaitVisible(chromedp.ID("username")), chromedp.KeyEvent(kb.Tab))
	if got := eval[string](alice, focused); got != "username" {
		t.Errorf("the first Tab on the sign-in form reaches %q, want username", got)
	}
	alice.register("alice")
	alice.do(chromedp.Focus(chromedp.CSS(".skip")), chromedp.KeyEvent(kb.Enter))
	if got := eval[string](alice, focused); got != "chat-input" {
		t.Errorf("Skip to chat put focus on %q, want chat-input", got)
	}
}
