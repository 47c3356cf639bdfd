package e2e_test

import (
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestSignedOutElsewhereSaysWhy: alice is signed in in two tabs and changes
// her password in the first. The second tab is signed out, and says why
// (the password was changed), not that the session expired.
func TestSignedOutElsewhereSaysWhy(t *testing.T) {
	first, second := twoTabs(t)

	first.do(evalVoid(`document.getElementById('password-details').open = true;
		document.getElementById('current-password').value = ` + js(password) + `;
		document.getElementById('new-password').value = document.getElementById('new-password-again').value = 'a brand new passphrase';`))
	first.press("password-change")
	first.waitFor("the password changed", `document.getElementById('password-message').textContent.startsWith('Password changed')`)
	second.waitFor("the sign-in form, saying why", `!document.getElementById('signin').hidden
		&& document.getElementById('signin-error').textContent.includes('password was changed')`)
}

// TestLogoutOthersInBrowser: "Sign out other devices" in one tab signs
// the account's other tab out, saying why; the first tab stays signed in
// and its connection goes on (it took fresh tokens).
func TestLogoutOthersInBrowser(t *testing.T) {
	first, second := twoTabs(t)

	first.do(evalVoid(`document.getElementById('others-details').open = true;
		document.getElementById('others-password').value = ` + js(password) + `;`))
	first.press("logout-others")
	first.waitFor("the others signed out", `document.getElementById('others-message').textContent === 'Your other devices are signed out.'`)
	second.waitFor("the sign-in form, saying why", `!document.getElementById('signin').hidden
		&& document.getElementById('signin-error').textContent.includes('signed out from another device')`)
	first.join("lobby") // still signed in, and its session answers
}

// twoTabs signs alice in, in two tabs: registered in the first, signed in
// with the form in the second.
func twoTabs(t *testing.T) (first, second *page) {
	s := signalingtest.Start(t, resumable)
	first, second = openPage(t, s.URL, "alice"), openPage(t, s.URL, "alice, second tab")
	first.register("alice")
	second.do(chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "alice"), chromedp.SendKeys(chromedp.ID("password"), password))
	second.press("login")
	second.waitFor("signed in", `khadgaApp.client && khadgaApp.client.connected`)
	return first, second
}
