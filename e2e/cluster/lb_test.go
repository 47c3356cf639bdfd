package cluster_test

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// balancer is a TCP load balancer in front of the nodes, as HAProxy or
// nginx stands in front of a real cluster: each connection goes to the next
// node in turn, and to the one after if that one refuses it (a node that
// died). Its URL is the one clients know.
type balancer struct {
	ln       net.Listener
	mu       sync.Mutex
	backends []string
	next     int
	conns    map[net.Conn]struct{}
}

func newBalancer(t *testing.T, urls ...string) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{ln: ln, conns: map[net.Conn]struct{}{}}
	for _, u := range urls {
		b.backends = append(b.backends, strings.TrimPrefix(u, "http://"))
	}
	go b.serve()
	t.Cleanup(b.close)
	return b
}

// URL is the balancer's address as an http URL.
func (b *balancer) URL() string { return "http://" + b.ln.Addr().String() }

func (b *balancer) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		go b.proxy(c)
	}
}

// proxy connects c to the next backend that takes it.
func (b *balancer) proxy(c net.Conn) {
	b.mu.Lock()
	order := make([]string, 0, len(b.backends))
	for i := range b.backends {
		order = append(order, b.backends[(b.next+i)%len(b.backends)])
	}
	b.next++
	b.mu.Unlock()
	var up net.Conn
	for _, addr := range order {
		var err error
		if up, err = net.Dial("tcp", addr); err == nil {
			break
		}
	}
	if up == nil {
		c.Close()
		return
	}
	b.track(c, up)
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	go pipe(up, c)
	go pipe(c, up)
	wg.Wait()
	c.Close()
	up.Close()
	b.untrack(c, up)
}

func (b *balancer) track(cs ...net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range cs {
		b.conns[c] = struct{}{}
	}
}

func (b *balancer) untrack(cs ...net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range cs {
		delete(b.conns, c)
	}
}

func (b *balancer) close() {
	b.ln.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.conns {
		c.Close()
	}
}
