package turn

import (
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// rawClient speaks TURN over UDP message by message, so that tests can
// send what a well-behaved client never would: a Send indication or
// ChannelData after the server refused the peer, or an XOR-PEER-ADDRESS in
// the IPv4-mapped IPv6 form.
type rawClient struct {
	t                     *testing.T
	conn                  net.PacketConn
	server                net.Addr
	username, pass, realm string
	nonce                 stun.Nonce
	relay                 *net.UDPAddr
}

const (
	attrRequestedTransport = stun.AttrType(0x0019)
	attrData               = stun.AttrType(0x0013)
	protoUDP               = 17
	magicCookie            = 0x2112A442 // RFC 5389 6
)

// newRawClient allocates a UDP relay on server with the given credentials.
func newRawClient(t *testing.T, server net.Addr, username, pass string) *rawClient {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawClient{t: t, conn: conn, server: server, username: username, pass: pass}
	transport := rawAttr(attrRequestedTransport, []byte{protoUDP, 0, 0, 0})

	// RFC 5766 6.1: the first Allocate is answered 401 with a realm and a
	// nonce for the authenticated retry.
	res := c.transact(stun.MethodAllocate, false, transport)
	var realm stun.Realm
	if err := realm.GetFrom(res); err != nil {
		t.Fatalf("first Allocate: no realm in %v", res)
	}
	if err := c.nonce.GetFrom(res); err != nil {
		t.Fatalf("first Allocate: no nonce in %v", res)
	}
	c.realm = realm.String()
	res = c.transact(stun.MethodAllocate, true, transport)
	if res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("Allocate refused: %v", res)
	}
	var relayed stun.XORMappedAddress
	if err := relayed.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		t.Fatal(err)
	}
	c.relay = &net.UDPAddr{IP: relayed.IP, Port: relayed.Port}
	return c
}

func rawAttr(typ stun.AttrType, v []byte) stun.Setter {
	return setterFunc(func(m *stun.Message) error {
		m.Add(typ, v)
		return nil
	})
}

type setterFunc func(*stun.Message) error

func (f setterFunc) AddTo(m *stun.Message) error { return f(m) }

// xorPeer encodes XOR-PEER-ADDRESS by hand (RFC 5389 15.2). With mapped
// set, an IPv4 address goes out in the IPv4-mapped IPv6 form, which pion's
// own encoder never produces.
func xorPeer(ip net.IP, port int, mapped bool) stun.Setter {
	return setterFunc(func(m *stun.Message) error {
		family, addr := byte(0x01), ip.To4()
		if addr == nil || mapped {
			family, addr = 0x02, ip.To16()
		}
		v := make([]byte, 4+len(addr))
		v[1] = family
		binary.BigEndian.PutUint16(v[2:], uint16(port)^uint16(magicCookie>>16))
		var key [16]byte
		binary.BigEndian.PutUint32(key[:4], magicCookie)
		copy(key[4:], m.TransactionID[:])
		for i := range addr {
			v[4+i] = addr[i] ^ key[i]
		}
		m.Add(stun.AttrXORPeerAddress, v)
		return nil
	})
}

// transact sends a request and returns the response with its transaction
// id, retransmitting as RFC 5389 asks (loopback rarely drops, but a busy
// CI machine can).
func (c *rawClient) transact(method stun.Method, auth bool, attrs ...stun.Setter) *stun.Message {
	c.t.Helper()
	req := buildRequest(method, attrs, auth, c.username, c.realm, c.pass, c.nonce)
	buf := make([]byte, 1500)
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		if _, err := c.conn.WriteTo(req.Raw, c.server); err != nil {
			c.t.Fatal(err)
		}
		if err := c.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
			c.t.Fatal(err)
		}
		for {
			n, _, err := c.conn.ReadFrom(buf)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break // retransmit
			}
			if err != nil {
				c.t.Fatal(err)
			}
			res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if res.Decode() == nil && res.TransactionID == req.TransactionID {
				return res
			}
		}
	}
	c.t.Fatalf("no answer to %v", method)
	return nil
}

// transactAuth is an authenticated transact.
func (c *rawClient) transactAuth(method stun.Method, attrs ...stun.Setter) *stun.Message {
	c.t.Helper()
	return c.transact(method, true, attrs...)
}

// rawStreamClient is rawClient over TCP: one allocation on one
// connection, requests answered in order.
type rawStreamClient struct {
	t                     *testing.T
	conn                  net.Conn
	username, pass, realm string
	nonce                 stun.Nonce
}

// newRawStreamClient allocates a UDP relay on server over TCP.
func newRawStreamClient(t *testing.T, server *net.TCPAddr, username, pass string) *rawStreamClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp4", server.String(), waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawStreamClient{t: t, conn: conn, username: username, pass: pass}
	transport := rawAttr(attrRequestedTransport, []byte{protoUDP, 0, 0, 0})
	res := c.roundTrip(stun.MethodAllocate, false, transport)
	var realm stun.Realm
	if realm.GetFrom(res) != nil || c.nonce.GetFrom(res) != nil {
		t.Fatalf("first Allocate: no realm or nonce in %v", res)
	}
	c.realm = realm.String()
	if res := c.transact(stun.MethodAllocate, transport); res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("Allocate refused: %v", res)
	}
	return c
}

// transact sends an authenticated request and returns its answer.
func (c *rawStreamClient) transact(method stun.Method, attrs ...stun.Setter) *stun.Message {
	c.t.Helper()
	return c.roundTrip(method, true, attrs...)
}

func (c *rawStreamClient) roundTrip(method stun.Method, auth bool, attrs ...stun.Setter) *stun.Message {
	c.t.Helper()
	req := buildRequest(method, attrs, auth, c.username, c.realm, c.pass, c.nonce)
	if err := c.conn.SetDeadline(time.Now().Add(waitTimeout)); err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(req.Raw); err != nil {
		c.t.Fatal(err)
	}
	for {
		res, err := readStreamSTUN(c.conn)
		if err != nil {
			c.t.Fatalf("answer to %v: %v", method, err)
		}
		if res.TransactionID == req.TransactionID {
			return res
		}
	}
}

// send is a Send indication (RFC 5766 10.1): data for a peer, no answer.
func (c *rawClient) send(peer *net.UDPAddr, data []byte) {
	c.t.Helper()
	m := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		xorPeer(peer.IP, peer.Port, false), rawAttr(attrData, data), stun.Fingerprint)
	if _, err := c.conn.WriteTo(m.Raw, c.server); err != nil {
		c.t.Fatal(err)
	}
}

// channelData sends ChannelData (RFC 5766 11.4) on channel.
func (c *rawClient) channelData(channel uint16, data []byte) {
	c.t.Helper()
	b := make([]byte, 4+len(data))
	binary.BigEndian.PutUint16(b, channel)
	binary.BigEndian.PutUint16(b[2:], uint16(len(data)))
	copy(b[4:], data)
	if _, err := c.conn.WriteTo(b, c.server); err != nil {
		c.t.Fatal(err)
	}
}

func channelNumber(n uint16) stun.Setter {
	return rawAttr(stun.AttrChannelNumber, []byte{byte(n >> 8), byte(n), 0, 0})
}

func isError(m *stun.Message) bool { return m.Type.Class == stun.ClassErrorResponse }

const (
	stunCreatePermission = stun.MethodCreatePermission
	stunChannelBind      = stun.MethodChannelBind
)

// buildRequest builds a request with a fresh transaction id and attrs,
// signed with the long-term credentials if auth.
func buildRequest(method stun.Method, attrs []stun.Setter, auth bool, username, realm, pass string, nonce stun.Nonce) *stun.Message {
	setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
	setters = append(setters, attrs...)
	if auth {
		setters = append(setters, stun.NewUsername(username), stun.NewRealm(realm), nonce,
			stun.NewLongTermIntegrity(username, realm, pass))
	}
	return stun.MustBuild(append(setters, stun.Fingerprint)...)
}
