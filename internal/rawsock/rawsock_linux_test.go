//go:build linux

package rawsock

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// rawPair returns both ends of a real TCP connection on 127.0.0.1, wrapped.
func rawPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	a, b = Wrap(c), Wrap(s)
	if _, ok := a.(*Conn); !ok {
		t.Fatalf("Wrap(%T) did not wrap", c)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// Eight MiB through a socket whose buffers are far smaller: writes must
// wait for room and reads for data, and every byte arrive in order.
func TestRawCopyThroughSmallBuffers(t *testing.T) {
	a, b := rawPair(t)
	if err := a.(*Conn).Conn.(*net.TCPConn).SetWriteBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 8<<20)
	rand.Read(want)
	errc := make(chan error, 1)
	go func() {
		_, err := a.Write(want)
		a.Close()
		errc <- err
	}()
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d, equal prefix %v", len(got), len(want), bytes.Equal(got[:min(len(got), 1024)], want[:min(len(got), 1024)]))
	}
}

func TestRawDeadlinesAndClose(t *testing.T) {
	a, b := rawPair(t)
	if err := b.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	var ne net.Error
	if _, err := b.Read(make([]byte, 10)); !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	// A full socket and a passed write deadline: Write returns what it
	// wrote and a timeout. The deadline leaves the write a second to start
	// (a deadline already past when it starts writes nothing), far more
	// than it needs on a loaded machine; nobody reads, so it then waits.
	if err := a.SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := a.Write(make([]byte, 64<<20))
	if !errors.As(err, &ne) || !ne.Timeout() || n == 0 || n >= 64<<20 {
		t.Fatalf("write to a full socket: %d bytes, %v; want part of it and a timeout", n, err)
	}
	a.Close()
	if _, err := a.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v, want net.ErrClosed", err)
	}
	if err := b.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, b); err != nil {
		t.Fatalf("reading to the end: %v", err)
	}
	if n, err := b.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read at end of stream: %d, %v; want io.EOF", n, err)
	}
}

func TestWrapLeavesOtherConnsAlone(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	if Wrap(c1) != c1 {
		t.Fatal("Wrap wrapped a net.Pipe conn, which has no file descriptor")
	}
}
