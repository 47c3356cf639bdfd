package e2e_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestChatFloodBounded: a room member that sends chat without end (here a
// Go peer, 300 messages at once) does not get them all onto another
// member's page: the SDK takes 20, then 5 a second, and the page says
// that some were not shown. Each message costs the page a layout and a
// save of its log: a flood once left a tab unresponsive for over 45 s.
func TestChatFloodBounded(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.join("flood")
	_, room, _ := goPeerJoins(t, s, "gopher", "flood", alice)

	start := time.Now() // the page's budget for gopher is full by now
	for i := range 300 {
		if _, err := room.Send(fmt.Sprint("flood ", i)); err != nil {
			t.Fatalf("Go send %d: %v", i, err)
		}
	}
	alice.waitFor("the notice that chat was dropped",
		`[...document.querySelectorAll('#chat-log li')].some(e => e.textContent.includes('faster than anyone types'))`)
	shown := eval[int](alice, `document.querySelectorAll('#chat-log li.msg[data-from="gopher"]').length`)
	// At most the burst and what the rate added since start.
	if limit := 20 + int(time.Since(start).Seconds()*5) + 1; shown < 20 || shown > limit {
		t.Fatalf("the page shows %d of 300 messages sent at once, want 20 to %d", shown, limit)
	}
}
