package hub

import (
	"bytes"
	"net"
	"syscall"
	"testing"
)

// sockPair returns a sockConn on one end of a loopback TCP connection and
// the plain other end.
func sockPair(t *testing.T) (*sockConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(); _ = peer.Close() })
	return &sockConn{Conn: c, rc: rc}, peer
}

// frame builds a masked client frame with a zero masking key.
func frame(op byte, payload []byte) []byte {
	var b []byte
	switch n := len(payload); {
	case n < 126:
		b = []byte{0x80 | op, 0x80 | byte(n)}
	case n < 1<<16:
		b = []byte{0x80 | op, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		b = []byte{0x80 | op, 0x80 | 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
	b = append(b, 0, 0, 0, 0)
	return append(b, payload...)
}

func TestSockConnReadsStopAtFrameEnds(t *testing.T) {
	sc, peer := sockPair(t)
	frames := [][]byte{
		frame(0xa, []byte("pong")),
		frame(0x1, []byte(`{"type":"ping"}`)),
		frame(0x1, bytes.Repeat([]byte("x"), 300)),
		frame(0x1, bytes.Repeat([]byte("y"), 70000)),
		frame(0xa, nil),
	}
	var all []byte
	for _, f := range frames {
		all = append(all, f...)
	}
	go func() { _, _ = peer.Write(all) }()

	// The leading pong is consumed without reaching the reader.
	if err := sc.fill(); err != nil {
		t.Fatal(err)
	}
	if !sc.skipPongs() {
		t.Fatal("skipPongs skipped nothing")
	}
	for i, f := range frames[1:] {
		got := make([]byte, 0, len(f))
		buf := make([]byte, 4096)
		for len(got) < len(f) {
			n, err := sc.Read(buf)
			if err != nil {
				t.Fatalf("frame %d: %v", i+1, err)
			}
			got = append(got, buf[:n]...)
		}
		if !bytes.Equal(got, f) {
			t.Fatalf("frame %d: read %d bytes that are not the frame's %d", i+1, len(got), len(f))
		}
		if sc.left != 0 || sc.hdrN != 0 {
			t.Fatalf("frame %d: not at a frame boundary after it (left %d, hdrN %d)", i+1, sc.left, sc.hdrN)
		}
	}
}
