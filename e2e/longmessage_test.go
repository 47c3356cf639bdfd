package e2e_test

import (
	"strings"
	"testing"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestMessageTooLong: the message box takes 16384 characters, but a
// message may hold 16 KiB of UTF-8, and an emoji takes four bytes. alice
// sends 8000 emoji: the page says in words that the message is too long,
// keeps it in the box to shorten, and bob gets nothing.
func TestMessageTooLong(t *testing.T) {
	_, alice, bob := twoInRoom(t, signalingtest.Options{}, "lobby")
	alice.do(evalVoid(`document.getElementById('chat-input').value = '😀'.repeat(8000)`))
	alice.press("send")
	alice.waitFor("the notice", `[...document.querySelectorAll('#chat-log li.notice')].some(e => e.textContent.includes('too long'))`)
	if got := eval[string](alice, `[...document.querySelectorAll('#chat-log li.notice')].pop().textContent`); !strings.Contains(got, "16 KiB") || !strings.Contains(got, "32 KiB") {
		t.Errorf("notice %q, want the limit and the size", got)
	}
	if n := eval[int](alice, `document.getElementById('chat-input').value.length`); n != 16000 {
		t.Errorf("the box holds %d characters, want the 16000 of the message", n)
	}
	alice.do(evalVoid(`document.getElementById('chat-input').value = ''`))
	alice.say("short")
	bob.waitMessage("alice", "short")
	if n := eval[int](bob, `document.querySelectorAll('#chat-log li.msg').length`); n != 1 {
		t.Errorf("bob has %d messages, want only the short one", n)
	}
}
