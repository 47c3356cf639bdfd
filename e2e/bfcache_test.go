package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestBackForwardCacheRestore: bob leaves the app for another page (the
// admin page) and comes back with the browser's back button. The page
// going away closes its socket and its peer connections (pagehide), so
// alice sees him leave at once, and the browser keeps the page in its
// back-forward cache: with a peer connection open Chromium would not
// ("WebRTC"), and the back button would load the app anew. The restored
// page reconnects with a new session, is back in lobby, and chat works
// both ways.
func TestBackForwardCacheRestore(t *testing.T) {
	s, alice, bob := twoInRoom(t, signalingtest.Options{Config: signaling.Config{ResumeWindow: 10 * time.Minute}}, "lobby")
	oldPeer := eval[string](bob, `khadgaApp.client.self.peer`)
	navs := navigations(t, bob)

	bob.do(chromedp.Navigate(s.URL + "/admin.html"))
	alice.waitFor("bob's session gone", fmt.Sprintf(`!khadgaApp.client.online.has(%[1]s) && !khadgaApp.client.peers.has(%[1]s)`, js(oldPeer)))
	// The back button, by script: chromedp's NavigateBack waits for a
	// load event, which a page restored from the cache does not fire.
	bob.do(evalVoid(`history.back()`))
	if nav := waitNavigation(t, navs); nav != string(cdppage.NavigationTypeBackForwardCacheRestore) {
		t.Fatalf("the back button loaded the app again (%s), not restored from the back-forward cache", nav)
	}
	// chromedp's Poll (waitFor) and queries keep the execution context of
	// the page before the restore; plain evaluations use the page's own.
	restored := func(what, cond string) {
		t.Helper()
		deadline := time.Now().Add(waitTimeout)
		for !eval[bool](bob, cond) {
			if time.Now().After(deadline) {
				t.Fatalf("bob: timed out waiting for %s\npage state: %s", what, bob.state())
			}
			time.Sleep(100 * time.Millisecond) // polling the page's state, as waitFor does
		}
	}
	restored("signed in again and back in lobby", `khadgaApp.client.connected && khadgaApp.client.rooms.has('lobby')`)
	if got := eval[string](bob, `khadgaApp.client.self.peer`); got == oldPeer {
		t.Errorf("the restored page kept peer %s, whose session ended when it went away", got)
	}
	restored("a connection to alice", `[...khadgaApp.client.peers.values()].some(p => p.member.user === 'alice' && p.chat.readyState === 'open')`)
	alice.waitConnected("bob")
	alice.say("welcome back")
	restored("alice's message", `[...document.querySelectorAll('#chat-log li.msg[data-from="alice"][data-transport="datachannel"] .text')].some(e => e.textContent === 'welcome back')`)
	bob.do(evalVoid(`document.getElementById('chat-input').value = 'thanks'; document.getElementById('chat-form').requestSubmit()`))
	alice.waitMessage("bob", "thanks")
}

// navigations reports each navigation of p's top frame after the first
// that follows: its type, or, for a page the browser would not keep in
// its back-forward cache, Chromium's reasons.
func navigations(t *testing.T, p *page) <-chan string {
	ctx, cancel := context.WithCancel(p.tab)
	t.Cleanup(cancel)
	out := make(chan string, 8)
	navigated := chromedp.Events(ctx, cdppage.FrameNavigated)
	notCached := chromedp.Events(ctx, cdppage.BackForwardCacheNotUsed)
	go func() {
		for e, err := range navigated {
			if err != nil {
				return
			}
			if e.Frame.ParentID == "" {
				out <- string(e.Type)
			}
		}
	}()
	go func() {
		for e, err := range notCached {
			if err != nil {
				return
			}
			var rs []string
			for _, r := range e.NotRestoredExplanations {
				rs = append(rs, fmt.Sprintf("%s (%s)", r.Reason, r.Type))
			}
			out <- "not cached: " + strings.Join(rs, ", ")
		}
	}()
	return out
}

// waitNavigation returns the second navigation navs reports (the first is
// the one away from the page), or the reasons Chromium gave for not
// caching the page.
func waitNavigation(t *testing.T, navs <-chan string) string {
	t.Helper()
	timeout := time.After(waitTimeout)
	seen := 0
	for {
		select {
		case nav := <-navs:
			if strings.HasPrefix(nav, "not cached") {
				return nav
			}
			if seen++; seen == 2 {
				return nav
			}
		case <-timeout:
			t.Fatalf("no navigation back within %v", waitTimeout)
		}
	}
}
