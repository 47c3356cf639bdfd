package signaling_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/signalingtest"
	pionturn "github.com/pion/turn/v4"
)

// TestWelcomeICEServersAllocate takes the TURN credentials from a real
// welcome and allocates a relay with them on the embedded TURN server.
func TestWelcomeICEServersAllocate(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{TURN: true})
	c := s.Connect(t, s.User(t, "alice").AccessToken, nil)
	w := c.Welcome
	if len(w.ICEServers) == 0 || w.ICEServersExpire <= time.Now().Unix() {
		t.Fatalf("welcome has no usable ICE servers: %+v", w)
	}
	var turnURL, user, pass string
	for _, ice := range w.ICEServers {
		for _, u := range ice.URLs {
			if strings.HasPrefix(u, "turn:") && strings.HasSuffix(u, "transport=udp") {
				turnURL, user, pass = u, ice.Username, ice.Credential
			}
		}
	}
	if turnURL == "" || !strings.HasSuffix(user, ":alice") {
		t.Fatalf("no UDP TURN server for alice in %+v", w.ICEServers)
	}
	addr := strings.TrimSuffix(strings.TrimPrefix(turnURL, "turn:"), "?transport=udp")

	client := turnClient(t, addr, user, pass)
	relay, err := client.Allocate()
	if err != nil {
		t.Fatalf("allocate with the welcome's credentials: %v", err)
	}
	defer relay.Close()
	if s.TURN.AllocationCount() != 1 {
		t.Fatalf("TURN server has %d allocations, want 1", s.TURN.AllocationCount())
	}
}

// turnClient is a TURN client of the server at addr over UDP, listening,
// closed when the test ends.
func turnClient(t *testing.T, addr, user, pass string) *pionturn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: user, Password: pass, Realm: "khadga", RTO: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	return client
}
