package e2e_test

import (
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestVideoWindowFollowsTheScreen: a video window opened on a wide screen
// stays on the screen when it narrows (a phone turned upright, a browser
// window made smaller): it moves and shrinks to fit, instead of staying
// where only its corner, or nothing, shows.
func TestVideoWindowFollowsTheScreen(t *testing.T) {
	_, alice, bob := twoInRoom(t, signalingtest.Options{}, "lobby")
	bob.press("camera")
	alice.waitFor("bob's video", `[...document.querySelectorAll('.vwin video')].some(v => v.videoWidth > 0)`)
	alice.do(chromedp.EmulateViewport(375, 667, chromedp.EmulateMobile))
	alice.waitFor("the window inside the screen", `(() => {
		const r = document.querySelector('.vwin').getBoundingClientRect();
		return innerWidth === 375 && r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.bottom <= innerHeight;
	})()`)
}
