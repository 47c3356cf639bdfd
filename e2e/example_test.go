package e2e_test

import (
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestSDKExamplePage: the documented example page (/sdk/example.html, built
// on the SDK alone) signs in, joins a room and chats with a person using the
// app.
func TestSDKExamplePage(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	s.Register(t, "bob", password)
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.join("lobby")

	bob := openPage(t, s.URL+"/sdk/example.html", "example")
	bob.do(
		chromedp.SendKeys(chromedp.ID("user"), "bob"),
		chromedp.SendKeys(chromedp.ID("pass"), password),
		chromedp.Clear(chromedp.ID("room")),
		chromedp.SendKeys(chromedp.ID("room"), "lobby"+kb.Enter),
	)
	bob.waitFor("the example's join", `[...document.querySelectorAll('#log li')].some(e => e.textContent.startsWith('joined lobby'))`)
	alice.waitConnected("bob")
	bob.waitFor("the connection to alice", `[...document.querySelectorAll('#log li')].some(e => e.textContent === 'connected to alice')`)

	alice.say("hello example")
	bob.waitFor("alice's message", `[...document.querySelectorAll('#log li')].some(e => e.textContent === 'alice: hello example')`)
	bob.do(chromedp.SendKeys(chromedp.ID("text"), "hello app"+kb.Enter))
	alice.waitMessage("bob", "hello app")
}
