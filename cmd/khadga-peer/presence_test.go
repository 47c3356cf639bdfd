package main

import (
	"testing"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/proto"
)

// TestPresenceLines: chat says each kind of presence update in words of
// its own. The full list and one person coming online both read
// "* online: bob", and a change of the count alone (the server sends it
// when more are online than it lists) read "* count: nobody". This
// process's own session is marked: it comes online like anyone.
func TestPresenceLines(t *testing.T) {
	alice, bob, carol := proto.Member{Peer: "p1", User: "alice"}, proto.Member{Peer: "p2", User: "bob"}, proto.Member{Peer: "p3", User: "carol"}
	for _, tc := range []struct {
		ev   client.Presence
		want string
	}{
		{client.Presence{Kind: proto.PresenceFull, Peers: []proto.Member{bob, alice}}, "* online now: alice, bob"},
		{client.Presence{Kind: proto.PresenceFull, Peers: []proto.Member{alice}, Count: 1201}, "* online now: alice, and 1200 more"},
		{client.Presence{Kind: proto.PresenceOnline, Peers: []proto.Member{bob}}, "* came online: bob"},
		{client.Presence{Kind: proto.PresenceOnline, Peers: []proto.Member{carol}}, "* came online: carol (you)"},
		{client.Presence{Kind: proto.PresenceOffline, Peers: []proto.Member{bob}}, "* went offline: bob"},
		{client.Presence{Kind: proto.PresenceCount, Count: 1202}, "* 1202 online"},
		{client.Presence{Kind: "a-later-kind"}, ""},
	} {
		if got := presenceLine(&tc.ev, carol.Peer); got != tc.want {
			t.Errorf("%s %v (count %d): %q, want %q", tc.ev.Kind, tc.ev.Peers, tc.ev.Count, got, tc.want)
		}
	}
}
