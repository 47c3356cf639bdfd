package client

import (
	"fmt"
	"net"
	"reflect"
	"time"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
)

// udpReadBuffer is the receive buffer asked for on every UDP socket pion
// opens for ICE (host, srflx and TURN client sockets). Linux's default,
// about 208 KiB, holds some 90 datagrams of a data channel: a burst from
// the remote's congestion window overflows it whenever this process is
// descheduled for a millisecond, the kernel drops the rest (Udp
// RcvbufErrors), and SCTP then recovers slowly. A few MiB absorbs the
// bursts on a fast path (loopback, LAN) and costs nothing on a slow one:
// the kernel charges buffer memory only for datagrams actually queued, and
// a queue forms only while this process reads slower than the path
// delivers (then media waits a little instead of being lost). The kernel
// caps the request at net.core.rmem_max; that is not an error. Behind the
// socket, pion keeps two fixed 1 MB queues (ICE agent, WebRTC mux) that
// still drop when the receiver's DTLS and SCTP are the slowest stage, as
// on loopback; see docs/benchmarks.md, "Go client".
const udpReadBuffer = 4 << 20

// socketNet is pion's standard network (stdnet) with larger UDP receive
// buffers. Interface lists are read afresh on every call, as pion does for
// each new ICE agent when it makes its own stdnet, so that a long-lived
// client sees the interfaces it has now, not those it had when it started.
type socketNet struct {
	*stdnet.Net // everything that does not list interfaces or open UDP sockets
}

var _ transport.Net = socketNet{}

func newSocketNet() (socketNet, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return socketNet{}, fmt.Errorf("list network interfaces: %w", err)
	}
	return socketNet{Net: n}, nil
}

// fresh is a stdnet with the interfaces as they are now.
func (socketNet) fresh() (*stdnet.Net, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	return n, nil
}

func (s socketNet) Interfaces() ([]*transport.Interface, error) {
	n, err := s.fresh()
	if err != nil {
		return nil, err
	}
	return n.Interfaces()
}

func (s socketNet) InterfaceByIndex(index int) (*transport.Interface, error) {
	n, err := s.fresh()
	if err != nil {
		return nil, err
	}
	return n.InterfaceByIndex(index)
}

func (s socketNet) InterfaceByName(name string) (*transport.Interface, error) {
	n, err := s.fresh()
	if err != nil {
		return nil, err
	}
	return n.InterfaceByName(name)
}

// bufferSocket raises a socket's receive buffer. A failure only loses the
// optimisation, so it does not fail the listen.
func bufferSocket(c any) {
	if b, ok := c.(interface{ SetReadBuffer(int) error }); ok {
		_ = b.SetReadBuffer(udpReadBuffer)
	}
}

func (s socketNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := s.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	bufferSocket(c)
	return c, nil
}

func (s socketNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := s.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	bufferSocket(c)
	return c, nil
}

func (s socketNet) DialUDP(network string, laddr, raddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := s.Net.DialUDP(network, laddr, raddr)
	if err != nil {
		return nil, err
	}
	bufferSocket(c)
	return c, nil
}

// turnDialTimeout bounds the TCP connects to TURN servers (turn: with
// transport=tcp, and turns:). Pion dials them with no deadline, so behind
// a firewall that drops the SYNs a connect hung for the kernel's two
// minutes of retries, and closing the peer connection waited for it (seen
// in the network lab, e2e/networks, topology 4). A TURN server that takes
// longer than this to accept is of no use to a call anyway.
const turnDialTimeout = 10 * time.Second

// DialTCP connects like stdnet, within turnDialTimeout.
func (s socketNet) DialTCP(network string, laddr, raddr *net.TCPAddr) (transport.TCPConn, error) {
	d := net.Dialer{Timeout: turnDialTimeout}
	if laddr != nil {
		d.LocalAddr = laddr
	}
	c, err := d.Dial(network, raddr.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// netUnset reports whether se leaves pion to pick its network, so that a
// caller's own (a vnet in a simulation, say) is never replaced. pion has
// no getter; if its field moves, this reports false and the client keeps
// pion's default sockets (TestNetUnset notices).
func netUnset(se *webrtc.SettingEngine) bool {
	f := reflect.ValueOf(se).Elem().FieldByName("net")
	return f.IsValid() && f.Kind() == reflect.Interface && f.IsNil()
}
