package e2e_test

import (
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestLongUsernameFits: a username of the longest kind (32 characters,
// no space to wrap at) stays inside the presence column on a desktop
// screen, and on a phone it neither widens the page nor pushes "Sign out"
// off the screen.
func TestLongUsernameFits(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.register("alexandra_the_very_long_username")
	alice.waitFor("the presence list", `document.querySelector('#presence li')`)
	if !eval[bool](alice, `(() => {
		const li = document.querySelector('#presence li'), r = document.createRange();
		r.selectNodeContents(li);
		return r.getBoundingClientRect().right <= li.closest('.card').getBoundingClientRect().right;
	})()`) {
		t.Error("the username runs out of the presence column")
	}
	// A phone widens the layout viewport (innerWidth) to fit a page that
	// is too wide, so the checks use the screen's 375px.
	alice.do(chromedp.EmulateViewport(375, 667, chromedp.EmulateMobile))
	if w := eval[int](alice, `document.documentElement.scrollWidth - 375`); w > 0 {
		t.Errorf("the page is %dpx wider than a 375px screen", w)
	}
	if !eval[bool](alice, `document.getElementById('signout').getBoundingClientRect().right <= 375`) {
		t.Error(`"Sign out" is off the screen`)
	}
}
