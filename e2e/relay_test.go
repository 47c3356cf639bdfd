package e2e_test

import (
	"testing"
	"time"

	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/khadga/khadga/turn"
)

// startTURN runs the embedded TURN server on 127.0.0.1. Its peer-address
// policy refuses loopback by default; the test allows 127.0.0.1, where both
// browsers' relays live.
func startTURN(t *testing.T) *turn.Server {
	t.Helper()
	return signalingtest.StartTURN(t, turn.Config{
		Secrets:      [][]byte{[]byte("e2e-turn-secret-0123456789")},
		AllowPeers:   []string{"127.0.0.1/32"},
		RelayMinPort: 40000,
		RelayMaxPort: 40999,
	})
}

// TestForcedRelay: with "relay only" ticked before signing in
// (iceTransportPolicy "relay"), two browsers connect through the embedded
// TURN server. Their badges say "relayed", the selected candidate pair is
// relay on both ends, chat works, and the TURN server holds allocations.
// After a resume, the fresh TURN credentials of the welcome trigger an ICE
// restart, and chat goes on.
func TestForcedRelay(t *testing.T) {
	ts := startTURN(t)
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{ICEServers: ts.ICEServers, ResumeWindow: 30 * time.Second}})
	alice, bob := openPage(t, s.URL, "alice"), openPage(t, s.URL, "bob")
	alice.others, bob.others = []*page{bob}, []*page{alice}
	for _, p := range []*page{alice, bob} {
		p.press("relay-only")
		if !eval[bool](p, `document.getElementById('relay-only').checked`) {
			t.Fatalf("%s: relay-only not ticked", p.name)
		}
	}
	alice.register("alice")
	bob.register("bob")
	if !eval[bool](alice, `khadgaApp.client.iceServers.some(s => [].concat(s.urls).some(u => u.startsWith('turn:')))`) {
		t.Fatalf("welcome carried no TURN server: %s", eval[string](alice, `JSON.stringify(khadgaApp.client.iceServers)`))
	}
	alice.join("relayed")
	bob.join("relayed")
	alice.waitConnected("bob")
	bob.waitConnected("alice")

	alice.say("through the relay")
	bob.waitMessage("alice", "through the relay")
	bob.say("relayed back")
	alice.waitMessage("bob", "relayed back")

	for _, pair := range [][2]*page{{alice, bob}, {bob, alice}} {
		p, other := pair[0], pair[1]
		p.waitFor("a relayed badge", `document.querySelector('#rooms li[data-user=`+js(other.name)+`] .badge[data-kind="relayed"]')`)
		got := eval[string](p, peerExpr(other.name)+`.candidatePair().then(c => c ? c.local + '/' + c.remote : 'none')`)
		if got != "relay/relay" {
			t.Errorf("%s: selected pair %s, want relay/relay", p.name, got)
		}
	}
	if n := ts.AllocationCount(); n < 2 {
		t.Errorf("TURN server has %d allocations, want at least 2", n)
	}

	// A resume brings fresh TURN credentials in its welcome; a relayed
	// connection restarts ICE with them (new ICE credentials in the SDP),
	// and chat goes on through the relay.
	ufrag := `(` + peerExpr("bob") + `.pc.localDescription.sdp.match(/a=ice-ufrag:(\S+)/) || [])[1]`
	before := eval[string](alice, ufrag)
	alice.do(evalVoid(`window.welcomes = []; khadgaApp.client.on('welcome', w => welcomes.push(w)); khadgaApp.client.dropSocket()`))
	alice.waitFor("a resumed welcome with TURN credentials", `welcomes.length > 0 && welcomes[0].resumed && welcomes[0].ice_servers.some(s => s.credential)`)
	alice.waitFor("an ICE restart", ufrag+` !== `+js(before)+` && `+peerExpr("bob")+`.pc.connectionState === 'connected'`)
	alice.say("after the ICE restart")
	bob.waitMessage("alice", "after the ICE restart")
	bob.say("still relayed")
	alice.waitMessage("bob", "still relayed")
	if got := eval[string](alice, peerExpr("bob")+`.connectionKind()`); got != "relayed" {
		t.Errorf("after the restart the connection is %q, want relayed", got)
	}
}
