package e2e_test

import (
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestInviteOfferNotTakenLater: an invite link put into a signed-in tab's
// address bar (another page that holds the tab can do that) is offered,
// with a button, and joins only on the click. alice leaves the offer
// alone and reloads, then signs out and in: neither joins its room.
func TestInviteOfferNotTakenLater(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.do(evalVoid(`location.hash = '#room=trap&invite=not-asked-for'`))
	alice.waitFor("the offer to join", `!document.getElementById('invite-offer').hidden`)

	// A join through the form goes out after any the page makes by itself
	// on signing in, and its answer comes after theirs.
	notInTrap := func(step, room string) {
		t.Helper()
		alice.join(room)
		if eval[bool](alice, `khadgaApp.client.rooms.has('trap')`) {
			t.Errorf("%s: alice's tab joined trap without her asking", step)
		}
	}
	alice.do(chromedp.Reload())
	alice.waitFor("signed in again", `khadgaApp.client && khadgaApp.client.connected && !document.getElementById('app').hidden`)
	notInTrap("after a reload", "first")

	alice.do(evalVoid(`location.hash = '#room=trap&invite=not-asked-for'`))
	alice.waitFor("the offer to join", `!document.getElementById('invite-offer').hidden`)
	alice.press("signout")
	alice.waitFor("the sign-in form", `!document.getElementById('signin').hidden`)
	alice.do(evalVoid(`document.getElementById('username').value = ''`))
	alice.do(chromedp.SendKeys(chromedp.ID("username"), "alice"), chromedp.SendKeys(chromedp.ID("password"), password))
	alice.press("login")
	alice.waitFor("signed in", `khadgaApp.client && khadgaApp.client.connected && !document.getElementById('app').hidden`)
	notInTrap("after signing out and in", "second")
}

// TestInviteByNavigationIsOffered: another page that holds a signed-in
// tab loads the app in it with an invite link (a full navigation, not a
// fragment change): the sign-in the tab restores offers the invite and
// does not join its room.
func TestInviteByNavigationIsOffered(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.do(chromedp.Navigate("about:blank"), chromedp.Navigate(s.URL+"/#room=trap&invite=not-asked-for"))
	alice.waitFor("signed in again", `khadgaApp.client && khadgaApp.client.connected && !document.getElementById('app').hidden`)
	alice.waitFor("the offer to join", `!document.getElementById('invite-offer').hidden`)
	// A join through the form goes out after any the page makes by itself
	// on signing in, and its answer comes after theirs.
	alice.join("first")
	if eval[bool](alice, `khadgaApp.client.rooms.has('trap')`) {
		t.Error("alice's tab joined trap without her asking")
	}
}
