package e2e_test

import (
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestReadableAndFocusable: the sign-in form (with an error under it), the
// app (a room with a connected member, a chat message and a notice, an
// invite link, a video window, and the security forms open) and the
// reconnecting banner meet WCAG AA contrast in the light and the dark
// colour scheme, and every control shows where the keyboard focus is,
// those of a video window (which clips what overflows it) included.
func TestReadableAndFocusable(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice, bob := openPage(t, s.URL, "alice"), openPage(t, s.URL, "bob")
	alice.do(chromedp.WaitVisible(chromedp.ID("username")), chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), "not the password"+kb.Enter))
	alice.waitFor("the refusal", `document.getElementById('signin-error').textContent !== ''`)
	alice.checkContrast("the sign-in form", "body")
	alice.checkFocus("the sign-in form")

	alice.do(evalVoid(`document.getElementById('username').value = document.getElementById('password').value = ''`))
	alice.register("alice")
	bob.register("bob")
	alice.join("club")
	bob.join("club")
	alice.waitConnected("bob")
	bob.say("hello")
	alice.waitMessage("bob", "hello")
	bob.press("camera") // alice gets a video window, whose bar and button take focus
	alice.waitFor("bob's video window", `document.querySelector('.vwin video')`)
	alice.do(chromedp.Focus(chromedp.CSS(`#rooms section[data-room="club"] button.invite`)), chromedp.KeyEvent(" "))
	alice.waitFor("the invite link", `document.querySelector('input[data-invite-link="club"]')`)
	alice.press("security-title")
	alice.press("totp-enroll")
	alice.waitFor("the two-factor setup", `!document.getElementById('totp-setup').hidden`)
	alice.press("password-title")
	alice.press("delete-title")
	alice.checkContrast("the app", "body")
	alice.checkFocus("the app")

	// The banner shows while the socket is down, which is brief: the page
	// checks it the moment it shows.
	alice.do(evalVoid(wcagJS + `
		window.banner = null;
		new MutationObserver(() => { const b = document.getElementById('banner'); if (!b.hidden && !window.banner) window.banner = wcag.contrast('#banner'); })
			.observe(document.getElementById('banner'), { attributes: true, childList: true });
		khadgaApp.client.dropSocket();`))
	alice.waitFor("the reconnecting banner", `window.banner`)
	for _, problem := range eval[[]string](alice, `window.banner`) {
		t.Errorf("the banner: %s", problem)
	}
}
