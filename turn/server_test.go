package turn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	pionturn "github.com/pion/turn/v4"

	"github.com/khadga/khadga/internal/testcert"
)

// allowPeer2 lets tests relay to 127.0.0.2, a loopback address that is
// not the server's own (the server listens on 127.0.0.1).
func allowPeer2(c *Config) { c.AllowPeers = []string{"127.0.0.2/32"} }

func TestRelayUDP(t *testing.T) {
	s, reg := startServer(t, allowPeer2)
	user, pass := mint("alice")
	c := newClient(t, s.UDPAddr(), user, pass)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	if got := relay.LocalAddr().(*net.UDPAddr).IP.String(); got != "127.0.0.1" {
		t.Fatalf("relay IP %s, want the listen IP 127.0.0.1", got)
	}
	if n := metricValue(t, reg, "khadga_turn_allocations_active", nil); n != 1 {
		t.Fatalf("active allocations %v, want 1", n)
	}
	peer := listenPeer(t, "127.0.0.2:0")
	relayRoundTrip(t, relay, peer)

	// A transaction on the same socket after the ping: pion handles a
	// client's messages in order, so the ping's relay write has been
	// counted once this is answered. The pong was counted before the
	// server forwarded it.
	if err := c.CreatePermission(peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"khadga_turn_allocations_created_total", nil, 1},
		{"khadga_turn_relayed_bytes_total", map[string]string{"direction": "to_peer"}, float64(len("ping through khadga turn!"))},
		{"khadga_turn_relayed_bytes_total", map[string]string{"direction": "from_peer"}, float64(len("pong from the peer"))},
		{"khadga_turn_relayed_packets_total", map[string]string{"direction": "to_peer"}, 1},
		{"khadga_turn_relayed_packets_total", map[string]string{"direction": "from_peer"}, 1},
	}
	for _, ck := range checks {
		if got := metricValue(t, reg, ck.name, ck.labels); got < ck.min {
			t.Errorf("%s%v = %v, want at least %v", ck.name, ck.labels, got, ck.min)
		}
	}
	relay.Close()
}

// TestDeallocate: a Refresh with lifetime 0 deletes the allocation, and the
// gauge and the user's quota count follow.
func TestDeallocate(t *testing.T) {
	s, reg := startServer(t, func(c *Config) { c.UserQuota = 1 })
	user, pass := mint("henry")
	c := newRawClient(t, s.UDPAddr(), user, pass)
	if n := metricValue(t, reg, "khadga_turn_allocations_active", nil); n != 1 {
		t.Fatalf("active allocations %v, want 1", n)
	}
	// Pion deletes the allocation, and runs the event handlers, before it
	// answers.
	if res := c.transact(stun.MethodRefresh, true, rawAttr(stun.AttrLifetime, []byte{0, 0, 0, 0})); isError(res) {
		t.Fatalf("Refresh(0): %v", res)
	}
	if n := metricValue(t, reg, "khadga_turn_allocations_active", nil); n != 0 {
		t.Errorf("active allocations after deallocation %v, want 0", n)
	}
	// The user's only slot is free again.
	newRawClient(t, s.UDPAddr(), user, pass)
}

func TestAuthRefused(t *testing.T) {
	now := time.Now()
	goodUser, _ := mint("alice")
	expiredUser, expiredPass, _ := Mint(testSecret, "alice", time.Hour, now.Add(-2*time.Hour))
	foreignUser, foreignPass, _ := Mint([]byte("not-our-secret"), "alice", time.Hour, now)
	cases := []struct {
		name, user, pass, reason string
	}{
		{"wrong password", goodUser, "bm90IHRoZSBwYXNzd29yZA==", "integrity"},
		{"expired", expiredUser, expiredPass, "expired"},
		{"unknown secret", foreignUser, foreignPass, "integrity"},
		{"not a REST username", "alice", restPassword(testSecret, "alice"), "malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, reg := startServer(t, nil)
			c := newClient(t, s.UDPAddr(), tc.user, tc.pass)
			_, err := c.Allocate()
			var te *stun.TurnError
			if !errors.As(err, &te) || te.ErrorCodeAttr.Code != stun.CodeBadRequest {
				t.Fatalf("Allocate: %v, want a 400 refusal", err)
			}
			// At least: a client retransmits when the answer is slow.
			if n := metricValue(t, reg, "khadga_turn_auth_failures_total", map[string]string{"reason": tc.reason}); n < 1 {
				t.Errorf("auth failures (%s) = %v, want at least 1", tc.reason, n)
			}
			if n := metricValue(t, reg, "khadga_turn_allocations_created_total", nil); n != 0 {
				t.Errorf("allocations created %v, want 0", n)
			}
		})
	}
}

// TestSecretRotation: the first secret mints, every listed secret is
// accepted, over UDP and over TCP (where the stream is cut into frames to
// find the secret).
func TestSecretRotation(t *testing.T) {
	newSecret, oldSecret := []byte("new-secret-0123456789"), []byte("old-secret-0123456789")
	s, _ := startServer(t, func(c *Config) {
		c.Secrets = [][]byte{newSecret, oldSecret}
		allowPeer2(c)
	})
	ice, _ := s.ICEServers("carol")
	if want := restPassword(newSecret, ice[1].Username); ice[1].Credential != want {
		t.Fatalf("ICEServers minted with the wrong secret")
	}
	peer := listenPeer(t, "127.0.0.2:0")
	for _, secret := range [][]byte{newSecret, oldSecret} {
		user, pass, _ := Mint(secret, "carol", time.Hour, time.Now())
		for _, transport := range []string{"udp", "tcp"} {
			t.Run(string(secret)+"/"+transport, func(t *testing.T) {
				var c *pionturn.Client
				if transport == "udp" {
					c = newClient(t, s.UDPAddr(), user, pass)
				} else {
					c = newTCPClient(t, s.TCPAddr(), nil, user, pass)
				}
				relay, err := c.Allocate()
				if err != nil {
					t.Fatalf("Allocate: %v", err)
				}
				defer relay.Close()
				relayRoundTrip(t, relay, peer)
			})
		}
	}
	user, pass, _ := Mint([]byte("retired-secret"), "carol", time.Hour, time.Now())
	if _, err := newTCPClient(t, s.TCPAddr(), nil, user, pass).Allocate(); err == nil {
		t.Fatal("a secret no longer listed was accepted over TCP")
	}
	if _, err := newClient(t, s.UDPAddr(), user, pass).Allocate(); err == nil {
		t.Fatal("a secret no longer listed was accepted over UDP")
	}
}

// newTCPClient is a pion TURN client over TCP, or TLS when tlsConf is set.
func newTCPClient(t *testing.T, addr *net.TCPAddr, tlsConf *tls.Config, user, pass string) *pionturn.Client {
	t.Helper()
	var conn net.Conn
	var err error
	if tlsConf != nil {
		conn, err = tls.Dial("tcp4", addr.String(), tlsConf)
	} else {
		conn, err = net.Dial("tcp4", addr.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	return startClient(t, pionturn.NewSTUNConn(conn), addr.String(), user, pass)
}

// TestExpiryCheckedOnEveryRequest: credentials that expire while an
// allocation is open stop working for its later requests.
func TestExpiryCheckedOnEveryRequest(t *testing.T) {
	var skew atomic.Int64
	s, reg := startServer(t, func(c *Config) {
		c.now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		c.AllowPeers = []string{"127.0.0.0/8"}
	})
	user, pass, _ := Mint(testSecret, "dave", time.Hour, time.Now())
	c := newClient(t, s.UDPAddr(), user, pass)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if err := c.CreatePermission(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 9}); err != nil {
		t.Fatalf("CreatePermission before expiry: %v", err)
	}
	skew.Store(int64(2 * time.Hour))
	if err := c.CreatePermission(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 3), Port: 9}); err == nil {
		t.Fatal("CreatePermission succeeded with expired credentials")
	}
	if n := metricValue(t, reg, "khadga_turn_auth_failures_total", map[string]string{"reason": "expired"}); n < 1 {
		t.Errorf("expired auth failures %v, want at least 1", n)
	}
}

func TestUserQuota(t *testing.T) {
	s, reg := startServer(t, nil)
	for i := 1; i <= DefaultUserQuota; i++ {
		// Fresh credentials each time: the quota counts the user, not the
		// username string.
		user, pass, _ := Mint(testSecret, "alice", time.Hour+time.Duration(i)*time.Second, time.Now())
		if _, err := newClient(t, s.UDPAddr(), user, pass).Allocate(); err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
	}
	user, pass := mint("alice")
	_, err := newClient(t, s.UDPAddr(), user, pass).Allocate()
	var te *stun.TurnError
	if !errors.As(err, &te) || te.ErrorCodeAttr.Code != stun.CodeAllocQuotaReached {
		t.Fatalf("allocation %d: %v, want 486", DefaultUserQuota+1, err)
	}
	user, pass = mint("bob")
	if _, err := newClient(t, s.UDPAddr(), user, pass).Allocate(); err != nil {
		t.Fatalf("another user: %v", err)
	}
	if n := metricValue(t, reg, "khadga_turn_quota_refusals_total", map[string]string{"quota": "user"}); n < 1 {
		t.Errorf("user quota refusals %v, want at least 1", n)
	}
	if n := s.AllocationCount(); n != DefaultUserQuota+1 {
		t.Errorf("AllocationCount %d, want %d", n, DefaultUserQuota+1)
	}
}

func TestTotalQuota(t *testing.T) {
	s, reg := startServer(t, func(c *Config) { c.TotalQuota = 2 })
	for i, name := range []string{"a", "b", "c"} {
		user, pass := mint(name)
		_, err := newClient(t, s.UDPAddr(), user, pass).Allocate()
		if (err == nil) != (i < 2) {
			t.Fatalf("allocation %d: %v", i+1, err)
		}
	}
	if n := metricValue(t, reg, "khadga_turn_quota_refusals_total", map[string]string{"quota": "total"}); n < 1 {
		t.Errorf("total quota refusals %v, want at least 1", n)
	}
}

func TestPermissionQuota(t *testing.T) {
	s, reg := startServer(t, func(c *Config) {
		c.PermissionQuota = 2
		c.AllowPeers = []string{"127.0.0.0/8"}
	})
	user, pass := mint("erin")
	c := newClient(t, s.UDPAddr(), user, pass)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	peer := func(last byte) net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, last), Port: 9} }
	for _, last := range []byte{2, 3, 2} { // the second 2 is a refresh
		if err := c.CreatePermission(peer(last)); err != nil {
			t.Fatalf("permission for 127.0.0.%d: %v", last, err)
		}
	}
	if err := c.CreatePermission(peer(4)); err == nil {
		t.Fatal("third peer address allowed over a quota of 2")
	}
	if n := metricValue(t, reg, "khadga_turn_quota_refusals_total", map[string]string{"quota": "permissions"}); n < 1 {
		t.Errorf("permission quota refusals %v, want at least 1", n)
	}
}

// TestChannelQuota: the channels of one allocation are capped apart from
// its peer addresses: channels to many ports of one permitted IP need one
// permission, and pion would keep 16,384 of them, each looked through for
// every relayed datagram. Refreshing a bound channel is not a new one.
// Over UDP and TCP, whose listeners tell the permission handler a
// ChannelBind from a CreatePermission each their own way.
func TestChannelQuota(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			s, reg := startServer(t, func(c *Config) {
				c.AllowPeers = []string{"127.0.0.2/32"}
				c.PermissionQuota = 1
				c.ChannelQuota = 3
			})
			u, p := mint("alice")
			transact := newRawClient(t, s.UDPAddr(), u, p).transactAuth
			if network == "tcp" {
				transact = newRawStreamClient(t, s.TCPAddr(), u, p).transact
			}
			bind := func(number uint16, port int) *stun.Message {
				return transact(stunChannelBind, channelNumber(number), xorPeer(net.IPv4(127, 0, 0, 2), port, false))
			}
			for i := range 3 {
				if res := bind(uint16(0x4000+i), 10000+i); isError(res) {
					t.Fatalf("channel %d of 3 refused: %v", i+1, res)
				}
			}
			if res := bind(0x4003, 10003); !isError(res) {
				t.Fatal("a fourth channel bound over a quota of 3")
			}
			if res := bind(0x4001, 10001); isError(res) {
				t.Fatalf("refreshing a bound channel refused: %v", res)
			}
			if res := transact(stunCreatePermission, xorPeer(net.IPv4(127, 0, 0, 2), 9, false)); isError(res) {
				t.Fatalf("a permission for the bound peer refused at the channel quota: %v", res)
			}
			if n := metricValue(t, reg, "khadga_turn_quota_refusals_total", map[string]string{"quota": "channels"}); n != 1 {
				t.Errorf("channel quota refusals %v, want 1", n)
			}
		})
	}
}

func TestICEServersWork(t *testing.T) {
	s, _ := startServer(t, nil)
	ice, expires := s.ICEServers("frank")
	udp, tcp := strconv.Itoa(s.UDPAddr().Port), strconv.Itoa(s.TCPAddr().Port)
	if len(ice) != 2 {
		t.Fatalf("ICEServers: %+v", ice)
	}
	if want := []string{"stun:127.0.0.1:" + udp}; !slices.Equal(ice[0].URLs, want) || ice[0].Username != "" {
		t.Errorf("stun entry %+v, want URLs %v and no credentials", ice[0], want)
	}
	want := []string{"turn:127.0.0.1:" + udp + "?transport=udp", "turn:127.0.0.1:" + tcp + "?transport=tcp"}
	if !slices.Equal(ice[1].URLs, want) {
		t.Errorf("turn URLs %v, want %v", ice[1].URLs, want)
	}
	if d := time.Until(expires); d < DefaultCredentialTTL-time.Minute || d > DefaultCredentialTTL+time.Minute {
		t.Errorf("expires in %v, want about %v", d, DefaultCredentialTTL)
	}
	c := newClient(t, s.UDPAddr(), ice[1].Username, ice[1].Credential)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate with ICEServers credentials: %v", err)
	}
	relay.Close()
}

func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	s, _ := startServerOn(t, ListenConfig{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0"}, func(c *Config) {
		c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }
		c.URLHost = "turn.test"
		allowPeer2(c)
	})
	ice, _ := s.ICEServers("gina")
	want := "turns:turn.test:" + strconv.Itoa(s.TLSAddr().Port) + "?transport=tcp"
	if !slices.Contains(ice[1].URLs, want) {
		t.Fatalf("URLs %v lack %s", ice[1].URLs, want)
	}
	c := newTCPClient(t, s.TLSAddr(), &tls.Config{RootCAs: pool, ServerName: "turn.test"}, ice[1].Username, ice[1].Credential)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate over TLS: %v", err)
	}
	defer relay.Close()
	relayRoundTrip(t, relay, listenPeer(t, "127.0.0.2:0"))
}

// TestManySockets: clients spread over several SO_REUSEPORT sockets all
// get served.
func TestManySockets(t *testing.T) {
	s, _ := startServerOn(t, ListenConfig{Addr: "127.0.0.1:0", UDPSockets: 4}, allowPeer2)
	if !reusePortSupported {
		t.Skip("no SO_REUSEPORT here")
	}
	if n := len(s.ls.UDP); n != 4 {
		t.Fatalf("%d UDP sockets, want 4", n)
	}
	peer := listenPeer(t, "127.0.0.2:0")
	for i := 0; i < 8; i++ {
		user, pass := mint("user" + strconv.Itoa(i))
		relay, err := newClient(t, s.UDPAddr(), user, pass).Allocate()
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		relayRoundTrip(t, relay, peer)
		relay.Close()
	}
}

func selfSigned(t *testing.T) (*tls.Certificate, *x509.CertPool) {
	t.Helper()
	c, err := testcert.SelfSigned(testcert.Spec{CommonName: "turn.test", DNSNames: []string{"turn.test"}})
	if err != nil {
		t.Fatal(err)
	}
	cert := c.TLS()
	return &cert, c.Pool()
}
