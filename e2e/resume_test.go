package e2e_test

import (
	"testing"
)

// TestResumeAfterDroppedSocket: the page's WebSocket is closed under it, as a
// network failure would. The app shows its banner, resumes the same session
// (same peer id, no leave and join for the others), and chat goes on.
func TestResumeAfterDroppedSocket(t *testing.T) {
	_, alice, bob := twoInRoom(t, resumable, "lobby")
	peer := eval[string](alice, `khadgaApp.client.self.peer`)
	// Record whether the banner ever shows, and every welcome after this point.
	alice.do(evalVoid(`
		window.bannerSeen = false;
		new MutationObserver(() => { if (!document.getElementById('banner').hidden) window.bannerSeen = true; })
			.observe(document.getElementById('banner'), {attributes: true, childList: true});
		window.welcomes = [];
		khadgaApp.client.on('welcome', w => welcomes.push(w));
		khadgaApp.client.dropSocket();`))

	alice.waitFor("the reconnecting banner", `window.bannerSeen`)
	alice.waitFor("a welcome after the drop", `welcomes.length > 0`)
	alice.waitFor("the banner to go away", `document.getElementById('banner').hidden`)
	if !eval[bool](alice, `welcomes[0].resumed === true`) {
		t.Fatalf("not resumed: %s", eval[string](alice, `JSON.stringify(welcomes[0])`))
	}
	if got := eval[string](alice, `khadgaApp.client.self.peer`); got != peer {
		t.Fatalf("peer id changed from %s to %s: the session was not resumed", peer, got)
	}
	// bob saw no leave: his only notice about alice is her first join.
	if n := eval[int](bob, `[...document.querySelectorAll('#chat-log li.notice')].filter(e => e.textContent.includes('alice left')).length`); n != 0 {
		t.Errorf("bob saw alice leave %d times", n)
	}

	alice.say("still here after the drop")
	bob.waitMessage("alice", "still here after the drop")
	bob.say("welcome back")
	alice.waitMessage("bob", "welcome back")

	// A second drop resumes with the new single-use token from the last welcome.
	alice.do(evalVoid(`khadgaApp.client.dropSocket()`))
	alice.waitFor("a second welcome", `welcomes.length > 1 && khadgaApp.client.connected`)
	if !eval[bool](alice, `welcomes[1].resumed === true && welcomes[1].peer === welcomes[0].peer`) {
		t.Fatalf("second drop not resumed: %s", eval[string](alice, `JSON.stringify(welcomes[1])`))
	}
	bob.say("and again")
	alice.waitMessage("bob", "and again")
}
