package client

import (
	"net"
	"testing"

	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
)

func TestNetUnset(t *testing.T) {
	var se webrtc.SettingEngine
	if !netUnset(&se) {
		t.Fatal("a fresh SettingEngine reports a network set: pion's field moved, and the client lost its socket buffers")
	}
	n, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	se.SetNet(n)
	if netUnset(&se) {
		t.Fatal("a caller's network would be replaced")
	}
}

// TestDialTCP: the TURN connects go through socketNet's DialTCP, which
// gives a real TCP connection (pion needs CloseWrite and friends).
func TestDialTCP(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sn, err := newSocketNet()
	if err != nil {
		t.Fatal(err)
	}
	c, err := sn.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.RemoteAddr().String() != ln.Addr().String() {
		t.Fatalf("connected to %v, want %v", c.RemoteAddr(), ln.Addr())
	}
}
