package hub

import (
	"testing"
	"time"

	"github.com/khadga/khadga/proto"
)

func TestKeepalivePingsSilentClients(t *testing.T) { forModes(t, testKeepalivePingsSilentClients) }

func testKeepalivePingsSilentClients(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{PongWait: 400 * time.Millisecond, PingPeriod: 100 * time.Millisecond}, mode)
	c := ts.dialRaw("user=quiet", true)
	pings := make(chan struct{}, 100)
	// gorilla's reader calls this for each ping; answer as the default does.
	def := c.ws.PingHandler()
	c.ws.SetPingHandler(func(data string) error {
		pings <- struct{}{}
		return def(data)
	})
	go c.read()
	c.expect(proto.TypeWelcome)
	// The client sends nothing for several PongWaits; the pongs keep it alive.
	for i := 0; i < 8; i++ {
		select {
		case <-pings:
		case <-time.After(wait):
			t.Fatal("no ping from the hub")
		}
	}
	c.ping("still-alive")
	if n := ts.hub.Stats().Connections; n != 1 {
		t.Fatalf("connections %d", n)
	}
}

func TestKeepaliveDropsDeadClients(t *testing.T) { forModes(t, testKeepaliveDropsDeadClients) }

func testKeepaliveDropsDeadClients(t *testing.T, mode serverMode) {
	ts := newTestServer(t, Config{PongWait: 300 * time.Millisecond, PingPeriod: 100 * time.Millisecond}, mode)
	dead := ts.dialRaw("user=dead", true) // never reads, so never answers pings
	_ = dead
	eventually(t, "the hub to see a connection", func() bool { return ts.hub.Stats().Connections == 1 })
	eventually(t, "the dead connection to be dropped", func() bool { return ts.hub.Stats().Connections == 0 })
	if n := ts.hub.Stats().Sessions; n != 1 {
		t.Fatalf("the session must wait for a resume, sessions %d", n)
	}
}
