package cluster

import (
	"testing"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/signaling/hub"
)

// Ready follows NATS: not ready while the server is away, ready again when
// it is back.
func TestReadyFollowsNATS(t *testing.T) {
	c := natstest.StartCluster(t, 1)
	a := startNode(t, "a", c.URLs(), fastConfig(), hub.Config{})
	if err := a.node.Ready(); err != nil {
		t.Fatalf("Ready with NATS up: %v", err)
	}
	c.Stop(0)
	eventually(t, "the node to say it is not ready", func() bool { return a.node.Ready() != nil })
	c.Restart(0)
	eventually(t, "the node to be ready again", func() bool { return a.node.Ready() == nil })
}
