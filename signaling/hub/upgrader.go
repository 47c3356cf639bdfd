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

// NewUpgrader returns a gorilla Upgrader suited to Hub.Start: it selects
// the protocol's subprotocols, checks Origin with checkOrigin (which must
// not be nil: origin policy is the caller's), gives each connection a small
// read buffer of its own, and lends write buffers from a shared pool, so
// that an idle connection holds no write buffer once its handler returned.
//
// With ServeConn, whose handler goroutine keeps net/http's 4 KiB read and
// write buffers alive anyway, NewServeConnUpgrader is cheaper.
func NewUpgrader(checkOrigin func(r *http.Request) bool) *websocket.Upgrader {
	return &websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   readBufferSize,
		WriteBufferSize:  4096,
		WriteBufferPool:  writeBufferPool,
		Subprotocols:     proto.Subprotocols,
		CheckOrigin:      checkOrigin,
	}
}

// readBufferSize is the per-connection read buffer of NewUpgrader. A larger
// message is read straight into the hub's pooled buffer, so this only
// decides how many small frames one read system call can bring in.
const readBufferSize = 256

// NewServeConnUpgrader returns an Upgrader for ServeConn: gorilla reuses the
// read and write buffers net/http already holds for the request instead of
// allocating its own.
func NewServeConnUpgrader(checkOrigin func(r *http.Request) bool) *websocket.Upgrader {
	return &websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		Subprotocols:     proto.Subprotocols,
		CheckOrigin:      checkOrigin,
	}
}
