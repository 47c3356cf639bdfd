package e2e_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/khadga/khadga/turn"
)

// onScreen is a JavaScript test for a chat message with text on the page.
func onScreen(text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('#chat-log li.msg .text')].some(e => e.textContent === %s)`, js(text))
}

// TestChatStaysAcrossReconnects: what was said stays on screen when the
// server restarts (the pages come back with new sessions) and when a page
// reloads (it signs in again, rejoins its room and puts the log back), and
// chat goes on after each; signing out forgets the kept log.
func TestChatStaysAcrossReconnects(t *testing.T) {
	s, alice, bob := twoInRoom(t, signalingtest.Options{}, "standup")
	alice.say("before anything")
	bob.waitMessage("alice", "before anything")

	addr, dir := strings.TrimPrefix(s.URL, "http://"), s.DataDir
	if err := s.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	signalingtest.Start(t, signalingtest.Options{Addr: addr, DataDir: dir})
	for _, p := range []*page{alice, bob} {
		p.waitFor("a new session", `khadgaApp.client.connected`)
		p.waitConnected(map[*page]string{alice: "bob", bob: "alice"}[p])
		if !eval[bool](p, onScreen("before anything")) {
			t.Fatalf("%s: the chat before the restart is gone", p.name)
		}
	}
	alice.say("after the restart")
	bob.waitMessage("alice", "after the restart")

	bob.do(chromedp.Reload())
	bob.waitFor("signed in again", `window.khadgaApp && khadgaApp.client && khadgaApp.client.connected`)
	bob.waitFor("the kept chat", onScreen("before anything")+` && `+onScreen("after the restart"))
	bob.waitFor("the room again", `khadgaApp.client.rooms.has('standup') && document.querySelector('#rooms section[data-room="standup"]')`)
	bob.waitConnected("alice")
	alice.say("after the reload")
	bob.waitMessage("alice", "after the reload")
	if n := eval[int](bob, `document.querySelectorAll('#chat-log li.msg').length`); n != 3 {
		t.Errorf("bob's log has %d messages after the reload, want 3 (none twice)", n)
	}

	bob.press("signout")
	bob.waitFor("signed out", `!document.getElementById('signin').hidden`)
	if eval[bool](bob, `document.querySelectorAll('#chat-log li').length > 0 || sessionStorage.getItem('khadga.chat') !== null || sessionStorage.getItem('khadga.rooms') !== null`) {
		t.Fatal("signing out left the chat on screen or in storage")
	}
}

// TestPeerFailureNotice: two pages connected only through the TURN relay,
// over TCP, lose it when the TURN server stops. Chrome fails the
// connection (ICE itself stays 'disconnected'), the SDK reports
// peer-failed, and both pages tell their user which connection was lost,
// without the firewall hint meant for a connection that never came up.
func TestPeerFailureNotice(t *testing.T) {
	ts := signalingtest.StartTURN(t, turn.Config{})
	overTCP := func(user string) ([]proto.ICEServer, time.Time) {
		servers, expires := ts.ICEServers(user)
		var out []proto.ICEServer
		for _, sv := range servers {
			var urls []string
			for _, u := range sv.URLs {
				if strings.Contains(u, "transport=tcp") && strings.HasPrefix(u, "turn:") {
					urls = append(urls, u)
				}
			}
			if len(urls) > 0 {
				sv.URLs = urls
				out = append(out, sv)
			}
		}
		return out, expires
	}
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{ICEServers: overTCP}})
	alice, bob := openPage(t, s.URL, "alice"), openPage(t, s.URL, "bob")
	alice.others, bob.others = []*page{bob}, []*page{alice}
	for _, p := range []*page{alice, bob} {
		p.press("relay-only")
		p.register(p.name)
		p.join("lobby")
	}
	alice.waitConnected("bob")
	bob.waitConnected("alice")
	for _, p := range []*page{alice, bob} {
		p.waitFor("a relayed path", fmt.Sprintf(`%s.connectionKind().then(k => k === 'relayed')`, peerExpr(map[*page]string{alice: "bob", bob: "alice"}[p])))
	}
	for _, p := range []*page{alice, bob} {
		p.do(evalVoid(`window.failures = []; khadgaApp.client.on('peer-failed', ({peer}) => failures.push(peer.user))`))
	}
	if err := ts.Close(); err != nil {
		t.Fatalf("stop TURN: %v", err)
	}
	for _, p := range []*page{alice, bob} {
		other := map[*page]string{alice: "bob", bob: "alice"}[p]
		p.waitFor("peer-failed from the SDK", fmt.Sprintf(`failures.includes(%s)`, js(other)))
		p.waitFor("the notice", fmt.Sprintf(
			`[...document.querySelectorAll('#chat-log li.peer-notice')].some(e => e.textContent.startsWith(e.firstChild.textContent + ' Lost the connection to ' + %s))`, js(other)))
		if n := eval[int](p, `[...document.querySelectorAll('#chat-log li.peer-notice')].filter(e => e.textContent.includes('firewall')).length`); n != 0 {
			p.t.Errorf("%s: a connection that worked is blamed on a firewall", p.name)
		}
	}
}
