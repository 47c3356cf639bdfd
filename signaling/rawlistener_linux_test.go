package signaling

import (
	"net"
	"testing"

	"github.com/khadga/khadga/internal/rawsock"
)

// TestRawListenerWraps: with in-process TLS, the record layer reads and
// writes sockets that the listener wrapped for raw system calls (every
// test run through forSchemes serves its wss half through it).
func TestRawListenerWraps(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := rawListener{ln}.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if _, ok := got.(*rawsock.Conn); !ok {
		t.Fatalf("accepted %T, want *rawsock.Conn", got)
	}
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if n, err := got.Read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
}
