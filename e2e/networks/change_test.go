package networks_test

import (
	"testing"
	"time"
)

// resumeWithin is how soon a call must come back after the network
// changes under it: what the clients are built for (client/peer.go,
// docs/networks.md). A browser that hears of the move ('online') restarts
// at once and came back in 2.1-2.2 s; one that does not hear of it has its
// own limit (offerLostWithin).
const resumeWithin = 10 * time.Second

// goMoveWithin is resumeWithin for two khadga-peers. The one that moved
// hears from the kernel that its addresses changed (client/netwatch.go,
// about 310 ms after the move), drops its signaling socket when its
// address is gone, and restarts ICE at once: chat came back in 1.08-1.10 s
// (three runs), 1.13-2.07 s when the addresses were read every 500 ms
// instead. Before it watched them,
// Go peers came back in 6.1-7.1 s: ICE calls a path disconnected after
// 3 s without answers to its keepalives, and the impolite side restarted
// 1 s later.
const goMoveWithin = 5 * time.Second

// TestNetworkChange is topology 6: in the middle of a call, alice moves
// from her router to another one (as a laptop goes from Wi-Fi to a phone's
// hotspot): her old interface and address are gone, and she has a new
// address behind a new router. Her signaling connection reconnects and
// resumes, ICE restarts, and chat flows again within resumeWithin; both
// khadga-peers tell their users.
func TestNetworkChange(t *testing.T) {
	t.Parallel()
	w := newWorld(t, "t6")
	a, b := w.addSite("a", eim, ""), w.addSite("b", eim, "")
	c := w.addRouter("c", eim)
	s := w.startServer("alice", "bob")
	alice := s.peer(t, a, "alice", "chat", "move")
	bob := s.peer(t, b, "bob", "chat", "move")
	alice.waitLine(`\* ` + connectedRe)
	bob.waitLine(`\* ` + connectedRe)
	alice.say("before the move")
	bob.waitLine(`\] alice: before the move$`)

	moved := time.Now()
	w.move(t, a, c)
	bob.say("after the move")
	alice.waitLineFor(`\] bob: after the move$`, 3*resumeWithin)
	back := time.Since(moved)
	alice.say("alice is back")
	bob.waitLineFor(`\] alice: alice is back$`, resumeWithin)
	// Alice, who moved, was told in words that the call dropped and is
	// back. Bob is told only if his ICE found the path gone before the
	// restart replaced it (in the output when so).
	alice.waitLine(`\* lost the connection to bob \(the network changed\); reconnecting`)
	t.Logf("alice: %s", alice.waitLine(`\* (connection to bob is back: .*)`)[1])
	t.Logf("RESULT topology 6 (alice moves to another router mid-call): chat back %v after the move", back.Round(time.Millisecond))
	if back > goMoveWithin {
		t.Errorf("chat came back %v after the move, want within %v", back, goMoveWithin)
	}
	for _, p := range []*proc{alice, bob} {
		p.say("/quit")
		if code := p.wait(); code != 0 {
			t.Errorf("%s exited %d", p.name, code)
		}
	}
}
