package turn

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestNewServesGivenSockets: New serves on sockets the caller opened as it
// likes (here without Listen, UDP and TCP on unrelated ports), hands out
// their ports, and closes them in Close.
func TestNewServesGivenSockets(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Secrets: [][]byte{testSecret}, Logger: testLogger(t), AllowPeers: []string{"127.0.0.2/32"}},
		&Listeners{UDP: []net.PacketConn{pc}, TCP: ln})
	if err != nil {
		t.Fatal(err)
	}
	udpPort, tcpPort := pc.LocalAddr().(*net.UDPAddr).Port, ln.Addr().(*net.TCPAddr).Port
	ice, _ := s.ICEServers("hana")
	want := "turn:127.0.0.1:" + strconv.Itoa(udpPort) + "?transport=udp turn:127.0.0.1:" + strconv.Itoa(tcpPort) + "?transport=tcp"
	if got := strings.Join(ice[1].URLs, " "); got != want {
		t.Errorf("URLs %s, want %s", got, want)
	}
	for _, c := range []interface {
		Allocate() (net.PacketConn, error)
	}{
		newClient(t, s.UDPAddr(), ice[1].Username, ice[1].Credential),
		newTCPClient(t, s.TCPAddr(), nil, ice[1].Username, ice[1].Credential),
	} {
		relay, err := c.Allocate()
		if err != nil {
			t.Fatalf("Allocate: %v", err)
		}
		relayRoundTrip(t, relay, listenPeer(t, "127.0.0.2:0"))
		relay.Close()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pc.ReadFrom(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("UDP socket after Close: %v, want closed", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("TCP listener after Close: %v, want closed", err)
	}
}

// TestNewRefusesListeners: listeners New cannot serve are refused, every
// problem named, and closed, since New owns them.
func TestNewRefusesListeners(t *testing.T) {
	cert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, errors.New("unused") }
	for _, c := range []struct {
		name  string
		cert  bool
		tls   bool
		noUDP bool
		want  []string
	}{
		{"no UDP", false, false, true, []string{"no UDP socket"}},
		{"TLS without certificate", false, true, false, []string{"TLS listener without a certificate"}},
		{"certificate without TLS", true, false, false, []string{"certificate (GetCertificate) without a TLS listener"}},
		{"no UDP and TLS without certificate", false, true, true, []string{"no UDP socket", "TLS listener without a certificate"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			lc := ListenConfig{Addr: "127.0.0.1:0", UDPSockets: 1}
			if c.tls {
				lc.TLSAddr = "127.0.0.1:0"
			}
			ls := listen(t, lc)
			all := *ls
			if c.noUDP {
				ls.UDP = nil
			}
			cfg := Config{Secrets: [][]byte{testSecret}}
			if c.cert {
				cfg.GetCertificate = cert
			}
			_, err := New(cfg, ls)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New = %v, want ErrInvalidConfig", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if _, err := all.TCP.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("TCP listener left open: %v", err)
			}
			if !c.noUDP {
				if _, _, err := all.UDP[0].ReadFrom(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
					t.Errorf("UDP socket left open: %v", err)
				}
			} else {
				all.UDP[0].Close()
			}
		})
	}
	if _, err := New(Config{Secrets: [][]byte{testSecret}}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New without listeners = %v", err)
	}
}

// TestListen: UDP and TCP share the port Listen picked, TLS gets its own,
// and a bad ListenConfig is refused with every problem named.
func TestListen(t *testing.T) {
	ls := listen(t, ListenConfig{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", UDPSockets: 3})
	defer ls.Close()
	udp := ls.UDP[0].LocalAddr().(*net.UDPAddr).Port
	if tcp := ls.TCP.Addr().(*net.TCPAddr).Port; tcp != udp {
		t.Errorf("TCP on %d, UDP on %d: want one port", tcp, udp)
	}
	if reusePortSupported && len(ls.UDP) != 3 {
		t.Errorf("%d UDP sockets, want 3", len(ls.UDP))
	}
	for _, pc := range ls.UDP {
		if p := pc.LocalAddr().(*net.UDPAddr).Port; p != udp {
			t.Errorf("UDP socket on %d, want %d", p, udp)
		}
	}
	if ls.TLS == nil {
		t.Fatal("no TLS listener")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Listen(ctx, ListenConfig{Addr: "nowhere", TLSAddr: "also:nowhere", UDPSockets: -1})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Listen = %v, want ErrInvalidConfig", err)
	}
	for _, w := range []string{`listen "nowhere"`, `TLS listen "also:nowhere"`, "UDP sockets -1"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
}
