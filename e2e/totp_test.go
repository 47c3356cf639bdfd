package e2e_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/pquerna/otp/totp"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestTwoFactorSignIn: a user turns on two-factor authentication in the app
// (the QR code shows under the page's CSP, the key is confirmed with the
// password and a code, and recovery codes are shown), and from then on
// signing in asks for a code: a wrong one is refused, the right one signs
// in.
func TestTwoFactorSignIn(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")

	alice.press("security-title") // opens the <details>
	alice.press("totp-enroll")
	alice.waitFor("the QR code", `document.getElementById('totp-qr').complete && document.getElementById('totp-qr').naturalWidth > 0 && document.getElementById('totp-secret').textContent.length >= 16`)
	secret := eval[string](alice, `document.getElementById('totp-secret').textContent`)
	confirmed := time.Now()
	code, err := totp.GenerateCode(secret, confirmed)
	if err != nil {
		t.Fatal(err)
	}
	alice.do(chromedp.SendKeys(chromedp.ID("totp-confirm-password"), password), chromedp.SendKeys(chromedp.ID("totp-confirm-code"), code+kb.Enter))
	alice.waitFor("the recovery codes", `!document.getElementById('totp-recovery').hidden && document.querySelectorAll('#totp-recovery-codes li').length === 10`)

	alice.press("signout")
	alice.do(chromedp.WaitVisible(chromedp.ID("signin")), chromedp.SetValue(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), password+kb.Enter))
	alice.waitFor("the code prompt", `!document.getElementById('code-row').hidden`)
	if !eval[bool](alice, `document.getElementById('app').hidden`) {
		t.Fatal("signed in without the second factor")
	}
	alice.do(chromedp.SendKeys(chromedp.ID("totp-code"), "000000"+kb.Enter))
	alice.waitFor("the refusal", `document.getElementById('signin-error').textContent.includes('wrong')`)

	// Each code works once: the next time step's code signs in.
	next, err := totp.GenerateCode(secret, confirmed.Add(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	alice.do(evalVoid(`document.getElementById('totp-code').value = ''`), chromedp.SendKeys(chromedp.ID("totp-code"), next+kb.Enter))
	alice.waitFor("signed in with the code", `khadgaApp.client && khadgaApp.client.connected && !document.getElementById('app').hidden`)
}

// TestTwoFactorFormsSayWhatIsMissing: confirming or turning off two-factor
// authentication with the password or the code left empty says which is
// missing, and sends nothing: the server would have answered "the password
// is wrong" (counting it against the sign-in limits) or "that code is
// wrong".
func TestTwoFactorFormsSayWhatIsMissing(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.press("security-title")
	alice.press("totp-enroll")
	alice.waitFor("the secret", `document.getElementById('totp-secret').textContent.length >= 16`)
	message := `document.getElementById('totp-message').textContent`
	sent := `performance.getEntriesByType('resource').some(e => e.name.endsWith('/api/totp/confirm'))`

	alice.press("totp-confirm")
	alice.waitFor("the missing password", message+` === 'Enter your password.'`)
	alice.do(chromedp.SendKeys(chromedp.ID("totp-confirm-password"), password))
	alice.press("totp-confirm")
	alice.waitFor("the missing code", message+` === 'Enter the code from your authenticator app.'`)
	if eval[bool](alice, sent) {
		t.Error("a form with an empty field was sent to the server")
	}
}
