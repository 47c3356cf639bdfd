// Package fakestun is a STUN server for tests, on 127.0.0.1, that answers
// binding requests with the mapped address the test chooses: a stand-in
// for the public IP a STUN server on the internet would report, which a
// test machine does not have. Nothing it does leaves loopback.
package fakestun

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/pion/stun/v3"
)

// Server answers STUN binding requests until the test ends.
type Server struct {
	conn   net.PacketConn
	ip     atomic.Pointer[netip.Addr]
	silent atomic.Bool
}

// Start starts a server that reports ip, and stops it when the test ends.
func Start(t testing.TB, ip string) *Server {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{conn: conn}
	s.Set(ip)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serve()
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return s
}

func (s *Server) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if m.Decode() != nil || m.Type != stun.BindingRequest || s.silent.Load() {
			continue
		}
		ip := *s.ip.Load()
		resp := stun.MustBuild(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: ip.AsSlice(), Port: from.(*net.UDPAddr).Port}, stun.Fingerprint)
		s.conn.WriteTo(resp.Raw, from)
	}
}

// Set changes the address reported from the next answer on.
func (s *Server) Set(ip string) { a := netip.MustParseAddr(ip); s.ip.Store(&a) }

// Silent makes the server ignore requests (true) or answer them again.
func (s *Server) Silent(on bool) { s.silent.Store(on) }

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.conn.LocalAddr().String() }
