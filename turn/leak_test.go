package turn

import (
	"net"
	"runtime"
	"testing"
	"time"
)

// TestCloseLeavesNoGoroutines: after Close, the goroutines pion started
// for the listeners, the TCP connection and the allocations all end.
// Pion gives no way to wait for them, so the test waits for the count to
// come back down.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := New(Config{
		Secrets:    [][]byte{testSecret, []byte("second-secret-0123456789")}, // the inspecting wrappers too
		AllowPeers: []string{"127.0.0.2/32"},
	}, listen(t, testListen))
	if err != nil {
		t.Fatal(err)
	}
	user, pass := mint("ivan")
	c := newRawClient(t, s.UDPAddr(), user, pass)
	peer := listenPeer(t, "127.0.0.2:0")
	pa := peer.LocalAddr().(*net.UDPAddr)
	if res := c.transact(stunCreatePermission, true, xorPeer(pa.IP, pa.Port, false)); isError(res) {
		t.Fatalf("CreatePermission: %v", res)
	}
	tcp, err := net.Dial("tcp4", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitTimeout)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before New, %d after Close:\n%s",
				before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
