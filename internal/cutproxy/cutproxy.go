// Package cutproxy is a TCP proxy for tests that can cut every connection
// through it and let new ones in again: a client connected through it is
// cut off from its server as one behind a failed link is, while the server
// and every other client go on. It can also stall the connections it
// carries (Stall): nothing is closed, nothing more is forwarded, as on a
// link that drops every packet.
package cutproxy

import (
	"net"
	"sync"
	"testing"
)

// Proxy forwards a port on 127.0.0.1 to a TCP server.
type Proxy struct {
	t      testing.TB
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
	gates  []*gate // one per pair of conns
}

// New starts a proxy to the server at target (host:port); it stops when
// the test ends.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	p := &Proxy{t: t, addr: "127.0.0.1:0", target: target}
	p.Up()
	p.addr = p.ln.Addr().String()
	t.Cleanup(p.Cut)
	return p
}

// Addr is the proxy's address, host:port.
func (p *Proxy) Addr() string { return p.addr }

// Up lets connections through again, on the same port.
func (p *Proxy) Up() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			g := newGate()
			p.mu.Lock()
			p.conns = append(p.conns, c, d)
			p.gates = append(p.gates, g)
			p.mu.Unlock()
			go pipe(d, c, g)
			go pipe(c, d, g)
		}
	}()
}

// Cut closes every connection through the proxy and refuses new ones
// until Up.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	for _, g := range p.gates {
		g.release()
	}
	p.conns, p.gates = nil, nil
}

// Stall stops forwarding on every connection through the proxy, in both
// directions, without closing any: the proxy reads no more, so the
// kernel's buffers fill and the ends' writes block, as behind a link that
// drops every packet. Connections made after it flow. Cut ends them.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, g := range p.gates {
		g.stall()
	}
}

// pipe copies from src to dst while g lets it.
func pipe(dst, src net.Conn, g *gate) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		g.wait()
		n, err := src.Read(buf)
		if n > 0 {
			g.wait()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// gate holds a connection's copying while it is stalled.
type gate struct {
	mu   sync.Mutex
	open chan struct{} // closed while the connection flows
}

func newGate() *gate {
	g := &gate{open: make(chan struct{})}
	close(g.open)
	return g
}

func (g *gate) wait() {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	<-open
}

func (g *gate) stall() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		g.open = make(chan struct{})
	default: // stalled already
	}
}

func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}
