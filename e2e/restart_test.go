package e2e_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestServerRestart: two browsers and two Go clients share a room; the
// server process is stopped (clients get the reconnect notice) and started
// again on the same address and data directory. Sessions do not survive a
// restart, so every client signs back in with its stored tokens, joins its
// room again and renegotiates. All four are back in the room within 5 s of
// the new server being ready, presence lists exactly the four, and chat
// flows between browsers and Go clients.
func TestServerRestart(t *testing.T) {
	s, alice, bob := twoInRoom(t, signalingtest.Options{}, "standup")
	g1, g2 := goPeer(t, s, "gopher"), goPeer(t, s, "gordon")
	rooms := map[string]*client.Room{}
	for name, g := range map[string]*client.Client{"gopher": g1, "gordon": g2} {
		ctx, cancel := contextWithTimeout(alice)
		r, err := g.Join(ctx, "standup")
		cancel()
		if err != nil {
			t.Fatalf("%s join: %v", name, err)
		}
		rooms[name] = r
	}
	for _, p := range []*page{alice, bob} {
		p.waitConnected("gopher")
		p.waitConnected("gordon")
	}
	// A second room, which alice's page and gordon are in, and whose owner
	// requires invites from now on (they, inside already, stay): after the
	// restart neither may come back, and both are told.
	eval[any](alice, `khadgaApp.client.join('annex').then(() => {
		khadgaApp.client.on('room-lost', (e) => { window.__roomLost = e; });
		return true;
	})`)
	ctx, cancel := contextWithTimeout(alice)
	annex, err := g2.Join(ctx, "annex")
	cancel()
	if err != nil {
		t.Fatalf("gordon join annex: %v", err)
	}
	s.ClaimRoom(t, g1.Tokens().Access, "annex")

	addr, dir := strings.TrimPrefix(s.URL, "http://"), s.DataDir
	if err := s.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	s2 := signalingtest.Start(t, signalingtest.Options{Addr: addr, DataDir: dir})
	ready := time.Now()

	// Back in the room: the server sees four members, each page its three
	// peers, and presence lists exactly the four users.
	deadline := ready.Add(waitTimeout)
	for s2.HubStats().Members != 4 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d members back after %v", s2.HubStats().Members, waitTimeout)
		}
		time.Sleep(10 * time.Millisecond) // polling the server's observable state
	}
	back := time.Since(ready)
	t.Logf("all four back in the room %v after the new server was ready", back.Round(time.Millisecond))
	if back > 5*time.Second {
		t.Errorf("clients took %v to come back, want at most 5 s", back)
	}
	for _, p := range []*page{alice, bob} {
		p.waitFor("presence of exactly the four", `(() => {
			const users = [...khadgaApp.client.online.values()].map(m => m.user).sort().join(',');
			return users === 'alice,bob,gopher,gordon';
		})()`)
	}
	for name, g := range map[string]*client.Client{"gopher": g1, "gordon": g2} {
		users := map[string]int{}
		for _, m := range g.Online() {
			users[m.User]++
		}
		if len(users) != 4 {
			t.Errorf("%s sees online %v, want the four users", name, users)
		}
	}

	// The page was told it lost annex, which left the page: chat goes to
	// standup.
	alice.waitFor("room-lost for annex, and annex off the page", `!!window.__roomLost && window.__roomLost.room === 'annex' &&
		window.__roomLost.code === 'invite_required' && !document.querySelector('#rooms section[data-room="annex"]') &&
		document.getElementById('chat-room').value === 'standup'`)

	// Chat flows both ways between browsers and Go clients.
	for _, p := range []*page{alice, bob} {
		p.waitConnected("gopher")
		p.waitConnected("gordon")
	}
	alice.say("after the restart")
	for name, r := range rooms {
		next[*client.Message](t, r, name+" hearing alice", func(m *client.Message) bool { return m.Text == "after the restart" })
	}
	if n, err := rooms["gopher"].Send("gopher is back"); err != nil || n != 3 {
		t.Fatalf("gopher sent to %d peers: %v", n, err)
	}
	alice.waitMessage("gopher", "gopher is back")
	bob.waitMessage("gopher", "gopher is back")
	next[*client.Message](t, rooms["gordon"], "gordon hearing gopher", func(m *client.Message) bool { return m.Text == "gopher is back" })

	if lost := next[*client.RoomLost](t, annex, "gordon losing annex", nil); !errors.Is(lost.Err, client.ErrInviteRequired) {
		t.Errorf("gordon lost annex with %v, want ErrInviteRequired", lost.Err)
	}
}
