package e2e_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// joinAsSDK connects page p with the SDK alone (no app), with an access
// token, and joins room. Tracks it receives are kept in window.got.
func joinAsSDK(p *page, token, room string) {
	p.t.Helper()
	if !eval[bool](p, fmt.Sprintf(`import('/sdk/khadga.js').then(async m => {
		const k = new m.Khadga({token: %s});
		window.got = {k, tracks: []};
		k.on('track', e => got.tracks.push(e.track));
		await k.connect();
		await k.join(%s);
		return true;
	})`, js(token), js(room))) {
		p.t.Fatal("SDK join failed")
	}
}

// TestRecorderNeedsOptIn: a recorder-role peer joins alice's room. The page
// marks it as recording, and sends it no track, although the camera is on,
// until alice switches "Share with recorder" on (and none after she switches
// it off again).
func TestRecorderNeedsOptIn(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.join("room")
	alice.press("camera")
	alice.waitFor("the camera", `khadgaApp.camera && khadgaApp.client.local.size === 2`)

	token, _, err := s.Keys().IssueAccess(auth.Claims{User: "rec", Role: "recorder", Rooms: []string{"room"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rec := openPage(t, s.URL+"/sdk/example.html", "recorder")
	alice.others, rec.others = []*page{rec}, []*page{alice}
	joinAsSDK(rec, token, "room")

	alice.waitFor("the recording mark on the recorder", `document.querySelector('#rooms li[data-user="rec"] .rec[data-recorder="true"]')`)
	alice.waitFor("the recorder note", `!document.getElementById('recorder-note').hidden`)
	alice.waitFor("the recording mark in the presence column", `document.querySelector('#presence li[data-user="rec"] .rec')`)
	alice.waitConnected("rec")
	rec.waitFor("the chat channel to alice", `[...got.k.peers.values()].some(p => p.chat.readyState === 'open')`)

	// Connected and negotiated, camera on, no opt-in: nothing is sent.
	recPeer := peerExpr("rec")
	alice.waitFor("a settled negotiation with the recorder", recPeer+`.pc.signalingState === 'stable'`)
	if n := eval[int](alice, recPeer+`.pc.getSenders().filter(s => s.track).length`); n != 0 {
		t.Fatalf("alice sends %d tracks to the recorder before opting in", n)
	}
	rec.waitFor("a settled negotiation", `[...got.k.peers.values()][0].pc.signalingState === 'stable'`)
	if n := eval[int](rec, `got.tracks.length + [...got.k.peers.values()][0].pc.getReceivers().length`); n != 0 {
		t.Fatalf("the recorder has %d tracks or receivers before alice opted in", n)
	}

	alice.press("share-recorder")
	rec.waitFor("alice's video at the recorder", `got.tracks.some(t => t.kind === 'video')`)
	rec.waitFor("decoded frames at the recorder", `(async () => {
		let frames = 0;
		(await [...got.k.peers.values()][0].pc.getStats()).forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'video') frames += r.framesDecoded || 0; });
		return frames > 0;
	})()`)

	alice.press("share-recorder")
	alice.waitFor("no track to the recorder after opting out", recPeer+`.pc.getSenders().filter(s => s.track).length === 0`)
}

// TestUnknownRoleGetsNoMedia: a signal can overtake the peer-joined that
// announces its sender (in a cluster it does), and the page then makes a
// peer whose role it does not know yet. That peer may be a recorder, so it
// gets no track until peer-joined says: none if it is a recorder (alice
// did not opt in), the camera's if it is a user.
func TestUnknownRoleGetsNoMedia(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.join("room")
	alice.press("camera")
	alice.waitFor("the camera", `khadgaApp.camera && khadgaApp.client.local.size === 2`)
	senders := func(step, peer string, want int) {
		t.Helper()
		got := eval[int](alice, fmt.Sprintf(`khadgaApp.client.peers.get(%s).senders.size`, js(peer)))
		if got != want {
			t.Fatalf("%s: the page gives peer %s %d tracks, want %d", step, peer, got, want)
		}
	}
	signal := func(peer string) {
		eval[bool](alice, fmt.Sprintf(`(khadgaApp.client.onSignal({from: %s, room: 'room', data: {}}), true)`, js(peer)))
	}
	joined := func(peer, user, role string) {
		eval[bool](alice, fmt.Sprintf(`(khadgaApp.client.memberJoined('room', {peer: %s, user: %s, role: %s}), true)`, js(peer), js(user), js(role)))
	}
	signal("recpeer0001")
	senders("a signal before peer-joined", "recpeer0001", 0)
	joined("recpeer0001", "rec", "recorder")
	senders("peer-joined says recorder", "recpeer0001", 0)
	signal("bobpeer0001")
	senders("a signal before peer-joined", "bobpeer0001", 0)
	joined("bobpeer0001", "bob", "user")
	senders("peer-joined says user", "bobpeer0001", 2)
}
