package e2e_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestReloadAndCloseLeaveNoGhost: a page that goes away cannot resume its
// session (the resume token lived in the page), so the others must see it
// go at once, not after the resume window. bob reloads: alice sees one bob
// online and in the room, not the new session beside the old one, and bob
// does not see himself as a member of his own room. Then bob closes the
// tab: alice sees him leave and go offline. The resume window is longer
// than any wait here, so a session left waiting for a resume would show.
func TestReloadAndCloseLeaveNoGhost(t *testing.T) {
	_, alice, bob := twoInRoom(t, signalingtest.Options{Config: signaling.Config{ResumeWindow: 10 * time.Minute}}, "lobby")
	one := func(who string) string {
		return fmt.Sprintf(`document.querySelectorAll('#presence li[data-user=%[1]s]').length === 1
			&& document.querySelectorAll('#rooms section[data-room="lobby"] li[data-user=%[1]s]').length === 1`, js(who))
	}
	oldPeer := eval[string](bob, `khadgaApp.client.self.peer`)

	bob.do(chromedp.Reload())
	bob.waitFor("signed in again and back in lobby", `khadgaApp.client && khadgaApp.client.connected && khadgaApp.client.rooms.has('lobby')`)
	bob.waitConnected("alice")
	alice.waitFor("bob's old session gone", fmt.Sprintf(`!khadgaApp.client.online.has(%[1]s) && !khadgaApp.client.peers.has(%[1]s)`, js(oldPeer)))
	alice.waitFor("one bob online and in lobby", one("bob"))
	bob.waitFor("one bob online, and no bob in lobby", one("alice")+` && document.querySelectorAll('#presence li[data-user="bob"]').length === 1
		&& !document.querySelector('#rooms section[data-room="lobby"] li[data-user="bob"]')`)

	ctx, cancel := contextWithTimeout(bob)
	_, err := chromedp.Call(ctx, cdppage.Close, cdp.Empty{})
	cancel()
	if err != nil {
		t.Fatalf("close bob's tab: %v", err)
	}
	alice.waitFor("bob gone from lobby and offline", `!document.querySelector('#presence li[data-user="bob"]')
		&& !document.querySelector('#rooms section[data-room="lobby"] li[data-user="bob"]') && khadgaApp.client.peers.size === 0`)
	alice.waitFor("the notice that bob left", `[...document.querySelectorAll('#chat-log li.notice')].some(e => e.textContent.includes('bob left'))`)
}
