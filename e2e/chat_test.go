package e2e_test

import (
	"fmt"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
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
	a, b := twoNodes(t)
	chatOfTwo(t, openPage(t, a.URL, "alice"), openPage(t, b.URL, "bob"), "across the cluster")
}

// TestChatWhenTicketAndSocketReachDifferentNodes: behind a load balancer
// a page's API requests and its WebSocket can reach different nodes. Here
// a proxy sends every WebSocket to node b and everything else to node a:
// both browsers sign in and get their tickets on a, and open their
// sockets on b, which has a redeem them.
func TestChatWhenTicketAndSocketReachDifferentNodes(t *testing.T) {
	a, b := twoNodes(t)
	front, urls := splitProxy(t, a.URL, b.URL)
	chatOfTwo(t, openPage(t, front, "alice"), openPage(t, front, "bob"), "through the proxy")
	// A proxy logs the URLs it forwards: the tickets went in
	// Sec-WebSocket-Protocol, not there.
	for _, u := range urls() {
		if strings.Contains(u, "ticket") || strings.Contains(u, "resume") {
			t.Errorf("a WebSocket URL carries a credential: %s", u)
		}
	}
	if n := a.HubStats().Connections; n != 0 {
		t.Errorf("node a holds %d WebSockets, want none: the proxy sends them all to b", n)
	}
	if n := b.HubStats().Connections; n != 2 {
		t.Errorf("node b holds %d WebSockets, want the 2 browsers'", n)
	}
}

// twoNodes starts two khadga nodes of a cluster (NATS with JetStream, in
// process) that share one store, as nodes share JetStream KV.
func twoNodes(t *testing.T) (a, b *signalingtest.Server) {
	t.Helper()
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
	return node("a"), node("b")
}

// chatOfTwo has alice and bob register, see each other, join a room,
// connect peer to peer and chat both ways.
func chatOfTwo(t *testing.T, alice, bob *page, where string) {
	t.Helper()
	alice.others, bob.others = []*page{bob}, []*page{alice}
	alice.register("alice")
	bob.register("bob")
	alice.waitFor("bob in the presence column", `document.querySelector('#presence li[data-user="bob"]')`)
	alice.join("lobby")
	bob.join("lobby")
	alice.waitConnected("bob")
	bob.waitConnected("alice")
	alice.say("hello " + where)
	bob.waitMessage("alice", "hello "+where)
	bob.say("and back")
	alice.waitMessage("bob", "and back")
}

// splitProxy is an HTTP reverse proxy that sends WebSocket upgrades to
// sockets and every other request to api (both base URLs), keeping the
// Host header, as a load balancer in front of both would. It returns its
// URL, and a function that lists the URLs of the upgrades so far.
func splitProxy(t *testing.T, api, sockets string) (string, func() []string) {
	t.Helper()
	apiURL, err := url.Parse(api)
	if err != nil {
		t.Fatal(err)
	}
	wsURL, err := url.Parse(sockets)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var upgrades []string
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		if strings.EqualFold(r.In.Header.Get("Upgrade"), "websocket") {
			mu.Lock()
			upgrades = append(upgrades, r.In.URL.String())
			mu.Unlock()
			r.SetURL(wsURL)
		} else {
			r.SetURL(apiURL)
		}
		r.Out.Host = r.In.Host
	}}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv.URL, func() []string {
		mu.Lock()
		defer mu.Unlock()
		if len(upgrades) == 0 {
			t.Error("the proxy saw no WebSocket")
		}
		return slices.Clone(upgrades)
	}
}
