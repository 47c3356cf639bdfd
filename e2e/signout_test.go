package e2e_test

import (
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestSignOutLeavesNothingForTheNext: what one person saw and chose stays
// with them. alice's page shows a failed join (the form refuses "..",
// which the server would refuse too, before asking), and she ticks "Share
// with recorder"; after a reload the box still says what the SDK does.
// She signs out, and bob signs in on the same tab: he sees no error of
// hers, and the box says he does not share with recorders (his client
// does not).
func TestSignOutLeavesNothingForTheNext(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.do(chromedp.SendKeys(chromedp.ID("room-name"), ".."), chromedp.Click(chromedp.ID("join")))
	alice.waitFor("the form's refusal", `document.getElementById('rooms-error').textContent.startsWith('Room names are')`)
	alice.press("share-recorder")
	alice.waitFor("sharing with recorders", `khadgaApp.client.shareWithRecorder`)
	sharing := `document.getElementById('share-recorder').checked === khadgaApp.client.shareWithRecorder`

	alice.do(chromedp.Reload())
	alice.waitFor("signed in again", `khadgaApp.client && khadgaApp.client.connected && !document.getElementById('app').hidden`)
	if !eval[bool](alice, sharing) {
		t.Errorf("after a reload the box says sharing %v, the SDK %v", eval[bool](alice, `document.getElementById('share-recorder').checked`), eval[bool](alice, `khadgaApp.client.shareWithRecorder`))
	}
	alice.press("share-recorder")
	alice.waitFor("sharing with recorders", `khadgaApp.client.shareWithRecorder`)
	alice.do(chromedp.SendKeys(chromedp.ID("room-name"), ".."), chromedp.Click(chromedp.ID("join")))
	alice.waitFor("the form's refusal", `document.getElementById('rooms-error').textContent.startsWith('Room names are')`)

	alice.press("signout")
	alice.waitFor("the sign-in form", `!document.getElementById('signin').hidden`)
	alice.do(evalVoid(`document.getElementById('username').value = ''`))
	alice.register("bob")
	if got := eval[string](alice, `document.getElementById('rooms-error').textContent`); got != "" {
		t.Errorf("bob's page shows alice's room error %q", got)
	}
	if !eval[bool](alice, sharing) {
		t.Errorf("bob's box says sharing %v, the SDK %v", eval[bool](alice, `document.getElementById('share-recorder').checked`), eval[bool](alice, `khadgaApp.client.shareWithRecorder`))
	}
}

// TestSignOutIsNotAnError: "Signed out." after the button is a
// confirmation, shown as a note (role status), not in the error style
// that is announced as an alert; a wrong password after it is an error
// again.
func TestSignOutIsNotAnError(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	style := `(m => m.className + ' ' + m.getAttribute('role'))(document.getElementById('signin-error'))`
	alice.press("signout")
	alice.waitFor("the confirmation", `document.getElementById('signin-error').textContent === 'Signed out.'`)
	if got := eval[string](alice, style); got != "note status" {
		t.Errorf("the sign-out's confirmation is %q, want a note with role status", got)
	}
	alice.do(chromedp.SetValue(chromedp.ID("username"), "alice"), chromedp.SetValue(chromedp.ID("password"), "not alice's password"))
	alice.press("login")
	alice.waitFor("the refusal", `!['', 'Signed out.'].includes(document.getElementById('signin-error').textContent)`)
	if got := eval[string](alice, style); got != "error alert" {
		t.Errorf("a wrong password's message is %q, want an error with role alert", got)
	}
}
