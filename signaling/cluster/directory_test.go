package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/signaling/hub"
)

// Sessions that open and close (code 1000) leave nothing behind in any
// node's directory once their tombstones expire. They leaked three ways:
// the revision recorded after a KV removal recreated an entry the watch
// had just removed; a session that ended before its first KV write was
// never removed (nothing to delete, so nothing to watch); and a direct
// Gone that came after the watch's removal recreated the entry.
func TestEndedSessionsLeaveNoDirectoryEntries(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	cfg := fastConfig()
	cfg.tombstoneTTL = 300 * time.Millisecond
	a := startNode(t, "a", urls, cfg, hub.Config{})
	b := startNode(t, "b", urls, cfg, hub.Config{})
	const n = 200
	for i := range n {
		c := a.dial(fmt.Sprintf("user=u%d", i))
		_ = c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
		<-c.closed
	}
	eventually(t, "every session to end", func() bool { return a.hub.Stats().Sessions == 0 && b.hub.Stats().Remote == 0 })
	eventually(t, "every directory entry to go", func() bool { return dirSize(a) == 0 && dirSize(b) == 0 })
}

func dirSize(tn *testNode) int {
	tn.node.dir.imu.Lock()
	defer tn.node.dir.imu.Unlock()
	return len(tn.node.dir.byPeer)
}
