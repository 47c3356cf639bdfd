package e2e_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/signaling/cluster"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/khadga/khadga/signaling/store"
)

// TestChatBetweenBrowsers: two people register and sign in through the
// page, see each other online, join a room and chat both ways, peer to peer.
// Then one leaves the room (the other sees it and drops the connection) and
// signs out (the other's presence column loses him).
func TestChatBetweenBrowsers(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice, bob := openPage(t, s.URL, "alice"), openPage(t, s.URL, "bob")
	alice.register("alice")
	bob.register("bob")

	alice.waitFor("bob in the presence column", `document.querySelector('#presence li[data-user="bob"]')`)
	bob.waitFor("alice in the presence column", `document.querySelector('#presence li[data-user="alice"]')`)

	alice.join("lobby")
	bob.join("lobby")
	alice.waitFor("bob listed in lobby", `document.querySelector('#rooms section[data-room="lobby"] li[data-user="bob"]')`)
	alice.waitConnected("bob")
	bob.waitConnected("alice")

	hello, reply := "hello bob, from the data channel", "hi alice, same way back"
	alice.say(hello)
	bob.waitMessage("alice", hello)
	bob.say(reply)
	alice.waitMessage("bob", reply)

	// The server relays only the handshake: no WebSocket frame of either
	// page carried the text (the pages did use their sockets).
	for _, p := range []*page{alice, bob} {
		if len(p.ws.containing(`"type":"signal"`)) == 0 {
			t.Fatalf("%s: recorded no signal frames (%d frames); the check below would prove nothing", p.name, p.ws.count())
		}
		for _, text := range []string{hello, reply} {
			if got := p.ws.containing(text); len(got) > 0 {
				t.Errorf("%s: chat text went through the signaling socket: %q", p.name, got[0])
			}
		}
	}
	// On 127.0.0.1 the pair is direct, and the badge says so.
	alice.waitFor("a direct badge for bob", `document.querySelector('#rooms li[data-user="bob"] .badge[data-kind="direct"]')`)
	if kind := eval[string](alice, fmt.Sprintf(`%s.connectionKind()`, peerExpr("bob"))); kind != "direct" {
		t.Errorf("connection kind %q, want direct", kind)
	}

	// bob leaves the room (its Leave button, from the keyboard): alice sees
	// him go and closes the peer connection; he is still online.
	bob.do(chromedp.Focus(chromedp.CSS(`#rooms section[data-room="lobby"] button`)), chromedp.KeyEvent(" "))
	alice.waitFor("bob gone from lobby", `!document.querySelector('#rooms section[data-room="lobby"] li[data-user="bob"]') && khadgaApp.client.peers.size === 0`)
	alice.waitFor("the notice that bob left", `[...document.querySelectorAll('#chat-log li.notice')].some(e => e.textContent.includes('bob left'))`)
	if !eval[bool](alice, `!!document.querySelector('#presence li[data-user="bob"]')`) {
		t.Error("bob left a room but vanished from the online list")
	}
	// Signing out takes him off alice's presence column.
	bob.press("signout")
	alice.waitFor("bob offline", `!document.querySelector('#presence li[data-user="bob"]') && document.getElementById('online-count').textContent === '1'`)
}

// TestChatOverTLS: the web app served over HTTPS by a server with
// in-process TLS, as khadga serve runs with a certificate; the page's
// WebSocket is wss://, and two people chat through it peer to peer.
func TestChatOverTLS(t *testing.T) {
	s, alice, bob := twoInRoom(t, signalingtest.Options{TLS: true}, "lobby")
	if !strings.HasPrefix(s.URL, "https://") {
		t.Fatalf("server at %s, want https", s.URL)
	}
	alice.say("hello over wss")
	bob.waitMessage("alice", "hello over wss")
	if got := alice.urls.containing("wss://"); len(got) == 0 {
		t.Fatalf("the page opened no wss:// socket")
	}
	if got := alice.urls.containing("ws://"); len(got) > 0 {
		t.Fatalf("the page opened a plain socket: %s", got[0])
	}
}

// TestChatAcrossClusterNodes: the chat of two browsers, one on each of two
// khadga nodes of a cluster (NATS with JetStream, in process): they see
// each other, connect peer to peer through a handshake that crosses the
// nodes, and chat.
func TestChatAcrossClusterNodes(t *testing.T) {
	nats := natstest.Start(t)
	st, err := store.Open(t.TempDir()+"/khadga.db", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	node := func(id string) *signalingtest.Server {
		return signalingtest.Start(t, signalingtest.Options{NATS: nats.ClientURL(), Store: st,
			Cluster: cluster.Config{NodeID: id}})
	}
	a, b := node("a"), node("b")
	alice, bob := openPage(t, a.URL, "alice"), openPage(t, b.URL, "bob")
	alice.others, bob.others = []*page{bob}, []*page{alice}
	alice.register("alice")
	bob.register("bob")
	alice.waitFor("bob (on node b) in the presence column", `document.querySelector('#presence li[data-user="bob"]')`)
	alice.join("lobby")
	bob.join("lobby")
	alice.waitConnected("bob")
	bob.waitConnected("alice")
	alice.say("hello across the cluster")
	bob.waitMessage("alice", "hello across the cluster")
	bob.say("and back")
	alice.waitMessage("bob", "and back")
}
