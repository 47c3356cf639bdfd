package turn

import (
	"net"

	pionturn "github.com/pion/turn/v4"
)

// countingRelay wraps a RelayAddressGenerator so that every relay socket
// counts the bytes and packets it carries.
type countingRelay struct {
	pionturn.RelayAddressGenerator
	metrics *metrics
	buffer  int // socket buffer size, <= 0: the OS default
}

func (r *countingRelay) AllocatePacketConn(network string, port int) (net.PacketConn, net.Addr, error) {
	conn, addr, err := r.RelayAddressGenerator.AllocatePacketConn(network, port)
	if err != nil {
		return nil, nil, err
	}
	setBuffers(conn, r.buffer)
	return &countingConn{PacketConn: conn, metrics: r.metrics}, addr, nil
}

// countingConn is a relay socket that counts what it carries. Reads are
// datagrams arriving from peers (pion drops those without a permission
// after reading them); writes are datagrams sent to peers.
type countingConn struct {
	net.PacketConn
	metrics *metrics
}

func (c *countingConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if err == nil {
		c.metrics.bytesFromPeer.Add(float64(n))
		c.metrics.packetsFromPeer.Inc()
	}
	return n, addr, err
}

func (c *countingConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(p, addr)
	if err == nil {
		c.metrics.bytesToPeer.Add(float64(n))
		c.metrics.packetsToPeer.Inc()
	}
	return n, err
}

// setBuffers asks for size-byte receive and send buffers on a UDP socket.
// The kernel may grant less; that only costs burst tolerance, so errors
// are ignored.
func setBuffers(c net.PacketConn, size int) {
	uc, ok := c.(*net.UDPConn)
	if !ok || size <= 0 {
		return
	}
	_ = uc.SetReadBuffer(size)
	_ = uc.SetWriteBuffer(size)
}
