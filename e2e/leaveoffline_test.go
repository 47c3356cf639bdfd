package e2e_test

import (
	"testing"
)

// TestLeaveWhileDisconnected: bob presses Leave while his socket is down
// (the banner says it is reconnecting). The leave cannot go out then, but
// his session, resumed, is still in the room on the server: the SDK sends
// it on the resume. alice sees him leave, and bob sees no error. Then bob
// turns his camera on and carol joins the room: nobody there gets a
// connection to bob, let alone his camera.
func TestLeaveWhileDisconnected(t *testing.T) {
	s, alice, bob := twoInRoom(t, resumable, "lobby")
	bob.do(evalVoid(`
		window.welcomes = [];
		khadgaApp.client.on('welcome', w => welcomes.push(w));
		khadgaApp.client.dropSocket();
		document.querySelector('#rooms section[data-room="lobby"] button').click();`))
	bob.waitFor("a resumed session", `welcomes.length > 0 && welcomes[0].resumed && khadgaApp.client.connected`)
	alice.waitFor("bob gone from lobby", `!document.querySelector('#rooms section[data-room="lobby"] li[data-user="bob"]') && khadgaApp.client.peers.size === 0`)
	alice.waitFor("the notice that bob left", `[...document.querySelectorAll('#chat-log li.notice')].some(e => e.textContent.includes('bob left'))`)
	if got := eval[string](bob, `document.getElementById('rooms-error').textContent`); got != "" {
		t.Errorf("bob's page shows %q after leaving", got)
	}
	if eval[bool](bob, `!!document.querySelector('#rooms section[data-room="lobby"]') || khadgaApp.client.rooms.size > 0`) {
		t.Error("bob's page still shows lobby")
	}

	bob.press("camera")
	bob.waitFor("the camera on", `khadgaApp.camera !== null`)
	carol := openPage(t, s.URL, "carol")
	carol.register("carol")
	carol.join("lobby")
	carol.waitConnected("alice")
	alice.waitConnected("carol")
	if n := eval[int](bob, `khadgaApp.client.peers.size`); n != 0 {
		t.Errorf("bob, out of every room, has %d peer connections", n)
	}
	if eval[bool](carol, peerExpr("bob")+` !== undefined`) {
		t.Error("carol has a peer connection to bob, who left lobby")
	}
}
