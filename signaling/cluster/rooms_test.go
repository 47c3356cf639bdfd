package cluster

import (
	"encoding/json"
	"testing"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// A room's limit counts people across nodes too: a user's sessions on two
// nodes take one place, members on other nodes count, and a place is free
// again when the user's last session leaves (issue 14, point 12).
func TestRoomLimitCountsPeopleAcrossNodes(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	a := startNode(t, "a", urls, fastConfig(), hub.Config{MaxRoomMembers: 2})
	b := startNode(t, "b", urls, fastConfig(), hub.Config{MaxRoomMembers: 2})
	sa, sb := a.dial("user=squatter"), b.dial("user=squatter")
	sa.join("lobby")
	eventually(t, "node b to know the squatter's first session", func() bool { return b.hub.RoomMembers("lobby") == 1 })
	sb.join("lobby") // the same person: no new place
	a.dial("user=alice").join("lobby")
	eventually(t, "node b to know alice", func() bool { return b.hub.RoomMembers("lobby") == 3 })

	bob := b.dial("user=bob")
	joinRefused(t, bob, "1", proto.CodeRoomFull)
	for _, c := range []*client{sa, sb} {
		c.send(proto.Message{Type: proto.TypeLeave, ID: "bye", Room: "lobby"})
		c.await(proto.TypeAck, nil)
	}
	eventually(t, "node b to see the squatter gone", func() bool { return b.hub.RoomMembers("lobby") == 1 })
	if peers := bob.join("lobby"); len(peers) != 1 {
		t.Fatalf("bob sees %d members, want alice", len(peers))
	}
}

// joinRefused asks c to join lobby and waits for the error code.
func joinRefused(t *testing.T, c *client, id string, code proto.Code) {
	t.Helper()
	c.send(proto.Message{Type: proto.TypeJoin, ID: id, Room: "lobby"})
	m := c.await(proto.TypeError, func(m *proto.Message) bool { return m.Ref == id })
	var e proto.Error
	if err := json.Unmarshal(m.Data, &e); err != nil || e.Code != code {
		t.Fatalf("join answered %s, want %s", m.Data, code)
	}
}
