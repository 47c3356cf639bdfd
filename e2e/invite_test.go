package e2e_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestInviteLink: alice makes an invite link for her room in the web app,
// which makes her its owner; carol, who only knows the room's name, is
// refused; bob opens the link, registers, lands in the room with alice and
// chats with her, and is back in it after a reload. The token is in the
// link's fragment only: bob's page never put it in a request URL, and took
// it out of the address bar (issue 14, point 12).
func TestInviteLink(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice, carol := openPage(t, s.URL, "alice"), openPage(t, s.URL, "carol")
	alice.register("alice")
	alice.join("club")
	alice.do(chromedp.Focus(chromedp.CSS(`#rooms section[data-room="club"] button.invite`)), chromedp.KeyEvent(" "))
	alice.waitFor("the invite link", `document.querySelector('input[data-invite-link="club"]')`)
	link := eval[string](alice, `document.querySelector('input[data-invite-link="club"]').value`)
	prefix := s.URL + "/#room=club&invite="
	token := strings.TrimPrefix(link, prefix)
	if !strings.HasPrefix(link, prefix) || len(token) < 22 {
		t.Fatalf("invite link %q, want %s and a token", link, prefix)
	}
	if rs, err := s.Store().GetRoom("club"); err != nil || rs.Owner != "alice" || !rs.InviteMatches(token) {
		t.Fatalf("room club after making the link: %+v, %v", rs, err)
	}

	carol.register("carol")
	carol.do(chromedp.SendKeys(chromedp.ID("room-name"), "club"+kb.Enter))
	carol.waitFor("the refusal", `document.getElementById('rooms-error').textContent.includes('needs an invite')`)

	bob := openPage(t, link, "bob")
	alice.others, bob.others = []*page{bob}, []*page{alice}
	bob.waitFor("the invitation", `!document.getElementById('signin-notice').hidden &&
		document.getElementById('signin-notice').textContent.includes('invited to room club')`)
	if h := eval[string](bob, `location.hash`); h != "" {
		t.Errorf("the token stayed in the address bar: %q", h)
	}
	bob.register("bob")
	bob.waitFor("room club joined with the invite", `khadgaApp.client.rooms.has('club') && document.querySelector('#rooms section[data-room="club"]')`)
	bob.waitConnected("alice")
	alice.waitConnected("bob")
	alice.say("welcome, invited bob")
	bob.waitMessage("alice", "welcome, invited bob")

	bob.do(chromedp.Reload())
	bob.waitFor("signed in again", `window.khadgaApp && khadgaApp.client && khadgaApp.client.connected`)
	bob.waitFor("club again, with the kept invite", `khadgaApp.client.rooms.has('club') && document.querySelector('#rooms section[data-room="club"]')`)
	bob.waitConnected("alice")

	// The link put into a signed-in tab's address bar (another page that
	// holds the tab can do that) does not join by itself: a join sends
	// the camera and microphone to the room. The tab asks, and joins on
	// the click.
	carol.do(evalVoid(`location.hash = ` + js("#room=club&invite="+token)))
	carol.waitFor("the offer to join", `!document.getElementById('invite-offer').hidden &&
		!!document.querySelector('#invite-offer button.join-invite')`)
	if eval[bool](carol, `khadgaApp.client.rooms.has('club')`) {
		t.Fatal("carol's tab joined club from a fragment change without asking")
	}
	carol.do(chromedp.Focus(chromedp.CSS(`#invite-offer button.join-invite`)), chromedp.KeyEvent(" "))
	carol.waitFor("club joined on the click", `khadgaApp.client.rooms.has('club') && document.querySelector('#rooms section[data-room="club"]')`)

	if len(bob.ws.containing(fmt.Sprintf(`"invite":%q`, token))) == 0 {
		t.Fatal("bob's socket never sent the invite; the check below would prove nothing")
	}
	if got := bob.urls.containing(token); len(got) > 0 {
		t.Errorf("a request URL of bob's page carries the invite token: %s", got[0])
	}
}
