package hub

import (
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/proto"
)

// writeBufferPool lends write buffers to connections only while they write.
var writeBufferPool = &sync.Pool{}

// NewUpgrader returns a gorilla Upgrader suited to the hub: it selects the
// protocol's subprotocols, checks Origin with checkOrigin (which must not be
// nil: origin policy is the caller's), and lends write buffers from a
// shared pool so that an idle connection holds none. Its read buffer is
// small, because an idle connection holds it for its whole life.
func NewUpgrader(checkOrigin func(r *http.Request) bool) *websocket.Upgrader {
	return &websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   1024,
		WriteBufferSize:  4096,
		WriteBufferPool:  writeBufferPool,
		Subprotocols:     proto.Subprotocols,
		CheckOrigin:      checkOrigin,
	}
}
