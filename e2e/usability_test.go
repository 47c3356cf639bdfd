package e2e_test

import (
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestInviteCopySaysCopied: the invite link's Copy button says "Copied"
// for a moment, and the page tells a screen reader (a status message),
// rather than leaving the person to wonder whether it worked.
func TestInviteCopySaysCopied(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.join("club")
	alice.do(chromedp.Focus(chromedp.CSS(`#rooms section[data-room="club"] button.invite`)), chromedp.KeyEvent(" "))
	alice.waitFor("the invite link", `document.querySelector('input[data-invite-link="club"]')`)
	alice.do(chromedp.Focus(chromedp.CSS(`#rooms section[data-room="club"] button.copy`)), chromedp.KeyEvent(" "))
	alice.waitFor("Copied, announced", `document.querySelector('#rooms section[data-room="club"] button.copy').textContent === 'Copied' &&
		document.querySelector('#rooms section[data-room="club"] .invite-box [role=status]').textContent === 'Invite link copied.'`)
	alice.waitFor("Copy again", `document.querySelector('#rooms section[data-room="club"] button.copy').textContent === 'Copy'`)
}

// TestServerErrorsReadAsSentences: the server's words ("invalid username
// or password") start with a capital and end with a full stop under the
// sign-in form, as the page's own messages do.
func TestServerErrorsReadAsSentences(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.do(chromedp.WaitVisible(chromedp.ID("username")), chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), "not the password"+kb.Enter))
	alice.waitFor("the refusal", `document.getElementById('signin-error').textContent !== ''`)
	if got := eval[string](alice, `document.getElementById('signin-error').textContent`); got != "Invalid username or password." {
		t.Errorf("the sign-in form says %q", got)
	}
}

// TestCameraOffAfterReloadSaysSo: a page reloaded in a call comes back
// with the camera off (a reload does not open the camera by itself), and
// a note by the camera button says so until the camera is on again.
func TestCameraOffAfterReloadSaysSo(t *testing.T) {
	s := signalingtest.Start(t, resumable)
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.join("call")
	alice.press("camera")
	alice.waitFor("the camera on", `khadgaApp.camera && document.getElementById('camera').textContent === 'Camera off'`)
	alice.do(chromedp.Reload())
	alice.waitFor("back in the room", `window.khadgaApp && khadgaApp.client && khadgaApp.client.connected && khadgaApp.client.rooms.has('call')`)
	alice.waitFor("the note", `!document.getElementById('camera-note').hidden &&
		document.getElementById('camera-note').textContent.includes('camera is off')`)
	alice.press("camera")
	alice.waitFor("the note gone with the camera on", `khadgaApp.camera && document.getElementById('camera-note').hidden`)
}

// TestTwoFactorSetupLabelsShow: the password and code boxes of the
// two-factor setup have labels on screen, not only placeholders, which
// go as soon as one types.
func TestTwoFactorSetupLabelsShow(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.press("security-title")
	alice.press("totp-enroll")
	alice.waitFor("the setup", `!document.getElementById('totp-setup').hidden`)
	for _, id := range []string{"totp-confirm-password", "totp-confirm-code"} {
		if !eval[bool](alice, `(l => !!l && l.getBoundingClientRect().width > 1 && l.getBoundingClientRect().height > 1 && l.textContent.trim() !== '')(document.getElementById(`+js(id)+`).labels[0])`) {
			t.Errorf("%s has no label on screen", id)
		}
	}
}
