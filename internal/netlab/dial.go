package netlab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// DialContext connects from inside the namespace, so that the test process
// (which stays in the host's namespace) can reach a server that listens
// only there. A socket belongs to the namespace it was created in, so the
// connection is made on a thread moved into the namespace for the socket
// call and moved back after; the socket then works from any thread.
func (n *Netns) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		var c net.Conn
		err := n.inNetns(func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}

// ListenPacket opens a packet socket inside the namespace.
func (n *Netns) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	done := make(chan error, 1)
	go func() {
		done <- n.inNetns(func() (err error) {
			c, err = net.ListenPacket(network, addr)
			return err
		})
	}()
	return c, <-done
}

// Listen opens a listening socket inside the namespace.
func (n *Netns) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	done := make(chan error, 1)
	go func() {
		done <- n.inNetns(func() (err error) {
			l, err = net.Listen(network, addr)
			return err
		})
	}()
	return l, <-done
}

// Do runs f on a thread inside the namespace: what f opens (a socket, a
// netlink subscription) belongs to the namespace and works from any
// thread afterwards.
func (n *Netns) Do(f func() error) error {
	done := make(chan error, 1)
	go func() { done <- n.inNetns(f) }()
	return <-done
}

// inNetns runs f on a locked thread that is in the namespace meanwhile. If
// the thread cannot return to its own namespace, it stays locked, and Go
// ends it with the goroutine instead of reusing it.
func (n *Netns) inNetns(f func() error) error {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netlab: own namespace: %w", err)
	}
	defer self.Close()
	target, err := os.Open(n.Path())
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netlab: namespace %s: %w", n.Name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netlab: enter %s: %w", n.Name, err)
	}
	ferr := f()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err == nil {
		runtime.UnlockOSThread()
	}
	return ferr
}

// HTTPClient is an HTTP client whose connections start inside the
// namespace.
func (n *Netns) HTTPClient() *http.Client {
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{DialContext: n.DialContext, DisableKeepAlives: true},
	}
}
