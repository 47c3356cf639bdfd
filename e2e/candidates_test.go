package e2e_test

import (
	"testing"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestRemoteCandidatesBoundedInBrowser: the page takes at most 256
// candidates from a remote for one set of its ICE credentials (each is
// kept, paired and checked by the browser); the rest are ignored.
func TestRemoteCandidatesBoundedInBrowser(t *testing.T) {
	_, alice, _ := twoInRoom(t, signalingtest.Options{}, "room")
	n := eval[int](alice, `(async () => {
		const p = `+peerExpr("bob")+`;
		for (let i = 0; i < 400; i++) {
			p.handleSignal({candidate: {candidate: 'candidate:' + (i + 100) + ' 1 udp 2130706431 127.0.0.1 ' + (20000 + i) + ' typ host', sdpMid: '0', sdpMLineIndex: 0}});
		}
		await p.queue;
		return p.candCount;
	})()`)
	if n != 256 {
		t.Fatalf("the page counted %d of 400 trickled candidates, want the limit, 256", n)
	}
	alice.waitConnected("bob")
}
