package e2e_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestLongRoomNameIsRefusedNotCut: a room name longer than the server
// takes is refused with a word, and nothing is joined. The input once had
// maxlength 64, which silently cut a pasted name to its first 64
// characters, and the page joined a room nobody had named.
func TestLongRoomNameIsRefusedNotCut(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	name := strings.Repeat("r", 70)
	alice.do(chromedp.SendKeys(chromedp.ID("room-name"), name), chromedp.Click(chromedp.ID("join")))
	alice.waitFor("the form's refusal", `document.getElementById('rooms-error').textContent.includes('70 characters')`)
	if got := eval[int](alice, `khadgaApp.client.rooms.size`); got != 0 {
		t.Errorf("the page is in %d rooms after a refused name", got)
	}
	if got := eval[string](alice, `document.getElementById('room-name').value`); got != name {
		t.Errorf("the input holds %q, not the name typed", got)
	}
}
