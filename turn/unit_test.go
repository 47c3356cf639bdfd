package turn

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestMint(t *testing.T) {
	// The password below comes from
	//   echo -n 1700000000:alice | openssl dgst -sha1 -hmac s3cret -binary | base64
	// which is what coturn computes for use-auth-secret.
	now := time.Unix(1700000000-3600, 0)
	user, pass, exp := Mint([]byte("s3cret"), "alice", time.Hour, now)
	if user != "1700000000:alice" || pass != "TtElzSjT0GdnTQ9xdcRNxx96yQs=" || exp.Unix() != 1700000000 {
		t.Fatalf("Mint = %q %q %v", user, pass, exp)
	}
}

func TestParseUsername(t *testing.T) {
	now := time.Unix(1000, 0)
	cases := []struct {
		in, user string
		err      error
	}{
		{"2000:alice", "alice", nil},
		{"2000:a:b", "a:b", nil},
		{"2000", "", nil},
		{"1000:alice", "alice", errExpired},
		{"999:alice", "alice", errExpired},
		{"alice:2000", "", errBadUsername},
		{"-5:alice", "", errBadUsername},
		{"", "", errBadUsername},
	}
	for _, tc := range cases {
		user, _, err := parseUsername(tc.in, now)
		if user != tc.user || !errors.Is(err, tc.err) {
			t.Errorf("parseUsername(%q) = %q, %v; want %q, %v", tc.in, user, err, tc.user, tc.err)
		}
	}
}

// TestOldRelayIPHeldWhileAllocated: when the public IP changes, the old
// relay address stays a relay address, reachable only at relay ports,
// while an allocation given it is open (it may still route to the
// server); once the last one closes it is an ordinary address again.
func TestOldRelayIPHeldWhileAllocated(t *testing.T) {
	p := newPeerPolicy(nil, nil, nil)
	old, fresh := netip.MustParseAddr("198.51.200.7"), netip.MustParseAddr("198.51.201.8")
	p.relayAt(old, netip.IPv4Unspecified())
	p.hold(old)
	p.hold(old)
	p.relayAt(fresh, netip.IPv4Unspecified())
	for _, ip := range []netip.Addr{old, fresh} {
		if !p.isRelay(ip) || !p.relayOnly(ip) {
			t.Fatalf("%v after the change: relay %v, port-restricted %v; want both", ip, p.isRelay(ip), p.relayOnly(ip))
		}
	}
	p.release(old)
	if !p.relayOnly(old) {
		t.Fatal("the old relay IP opened with one of its two allocations still open")
	}
	p.release(old)
	if p.isRelay(old) || p.relayOnly(old) || !p.allowed(old) {
		t.Fatalf("the old relay IP after its last allocation: relay %v, port-restricted %v, allowed %v; want an ordinary peer",
			p.isRelay(old), p.relayOnly(old), p.allowed(old))
	}
	p.hold(fresh)
	p.release(fresh)
	if !p.isRelay(fresh) || !p.relayOnly(fresh) {
		t.Fatal("the current relay IP left the relay set when an allocation closed")
	}
}

func TestPolicy(t *testing.T) {
	p := newPeerPolicy(
		[]netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("203.0.113.7/32")},
		[]netip.Prefix{netip.MustParsePrefix("8.8.4.0/24")},
		[]netip.Addr{netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("198.51.100.1")},
	)
	denied := []string{
		"127.0.0.1", "127.9.9.9", "0.0.0.0", "0.1.2.3", "::", "::1", "::ffff:127.0.0.1",
		"::ffff:10.0.0.1", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
		"100.64.0.1", "169.254.169.254", "::ffff:169.254.169.254", "fe80::1", "fe80::1%eth0",
		"224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.0.8",
		"198.18.0.1", "198.19.255.255", "fc00::1", "fd12:3456::1", "ff02::1",
		"64:ff9b::7f00:1", "64:ff9b::808:808", "64:ff9b:1::1",
		"192.0.2.1", "198.51.100.9", "203.0.113.8", "::ffff:203.0.113.8", // documentation ranges
		"2001:db8::1", "3fff::1", // IPv6 documentation ranges
		"168.63.129.16", "::ffff:168.63.129.16", // Azure's platform address
		"8.8.4.4",        // operator deny
		"198.51.100.1",   // the server's own address
		"::ffff:8.8.4.4", // operator deny, mapped
	}
	allowed := []string{
		"8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8",
		"10.1.2.3",    // allow wins over RFC 1918
		"203.0.113.7", // allow wins over the server's own address and a documentation range
		"172.32.0.1", "100.128.0.1", "198.20.0.1",
	}
	for _, s := range denied {
		if p.allowed(netip.MustParseAddr(s)) {
			t.Errorf("%s allowed, want denied", s)
		}
	}
	for _, s := range allowed {
		if !p.allowed(netip.MustParseAddr(s)) {
			t.Errorf("%s denied, want allowed", s)
		}
	}
	if p.allowed(netip.Addr{}) || p.allowedIP(nil) {
		t.Error("the invalid address is allowed")
	}

	// Once relays listen on the server's address, it is allowed as a
	// peer, but only relay ports may be used there (relayOnly); an
	// explicitly allowed own address stays fully open.
	self := netip.MustParseAddr("198.51.100.1")
	if p.relayOnly(netip.MustParseAddr("8.8.8.8")) {
		t.Error("relayOnly for a public peer")
	}
	p.relayAt(self, netip.IPv4Unspecified())
	if !p.allowed(self) || !p.relayOnly(self) || !p.relayOnly(netip.MustParseAddr("::ffff:198.51.100.1")) {
		t.Errorf("relay address %s: allowed %v, relayOnly %v; want both", self, p.allowed(self), p.relayOnly(self))
	}
	if p.allowed(netip.IPv4Unspecified()) {
		t.Error("the unspecified bind address became a relay address")
	}
	if own := netip.MustParseAddr("203.0.113.7"); p.relayOnly(own) {
		t.Errorf("%s is explicitly allowed, yet limited to relay ports", own)
	}
}

func TestPolicyWarnsOnOpenings(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	p := newPeerPolicy(
		[]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("8.8.8.0/24")},
		nil, []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	p.warnOpenings(log)
	out := buf.String()
	if !strings.Contains(out, "allow=127.0.0.1/32 denied=127.0.0.0/8") {
		t.Errorf("no warning for the loopback allow:\n%s", out)
	}
	if strings.Contains(out, "8.8.8.0/24") {
		t.Errorf("warning for a public allow:\n%s", out)
	}
}

func TestValidateReportsEverything(t *testing.T) {
	err := Config{
		PublicIP:      "::1",
		RelayMinPort:  6000,
		RelayMaxPort:  5000,
		Secrets:       [][]byte{[]byte("ok"), nil},
		CredentialTTL: time.Second,
		AllowPeers:    []string{"bad-allow"},
		DenyPeers:     []string{"bad-deny"},
	}.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"public IP", "relay ports", "secret 1 is 2 bytes, want at least 16", "secret 2 is empty",
		"credential TTL", "bad-allow", "bad-deny"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// A typo (5-51010 for 50000-51010) would relay from the system's
	// service ports.
	low := Config{RelayMinPort: 5, RelayMaxPort: 51010, Secrets: [][]byte{[]byte("a long enough secret")}}.Validate()
	if low == nil || !strings.Contains(low.Error(), "relay ports 5-51010: want 1024 <= min") {
		t.Errorf("Validate of relay ports from 5 = %v", low)
	}
	if err := (Config{}).Validate(); err == nil || !strings.Contains(err.Error(), "no TURN secret") {
		t.Errorf("Validate without secret = %v", err)
	}
	if err := (Config{Secrets: [][]byte{[]byte("sixteen-bytes-ok")}}).Validate(); err != nil {
		t.Errorf("defaults with a secret: %v", err)
	}
}

// TestShortSecretRefused: a secret under MinSecretLen bytes is refused with
// a message that says why; a 1-byte one passed before (issue 14, point 13).
func TestShortSecretRefused(t *testing.T) {
	for _, secret := range []string{"x", "fifteen-bytes!!"} {
		_, err := New(Config{Secrets: [][]byte{[]byte(secret)}}, listen(t, testListen))
		want := fmt.Sprintf("TURN secret 1 is %d bytes, want at least %d", len(secret), MinSecretLen)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "offline") {
			t.Errorf("New with a %d-byte secret: %v", len(secret), err)
		}
	}
}

func TestICEConfigTransports(t *testing.T) {
	c := ICEConfig{Host: "2001:db8::1", TCPPort: 443, TLSPort: 5349, Secret: []byte("s"), TTL: time.Hour}
	ice, exp := c.ICEServers("u", time.Unix(0, 0))
	if len(ice) != 1 || exp.Unix() != 3600 {
		t.Fatalf("ICEServers = %+v, %v", ice, exp)
	}
	want := []string{"turn:[2001:db8::1]:443?transport=tcp", "turns:[2001:db8::1]:5349?transport=tcp"}
	if strings.Join(ice[0].URLs, " ") != strings.Join(want, " ") {
		t.Errorf("URLs %v, want %v (no stun: or udp without UDP)", ice[0].URLs, want)
	}
	if ice[0].Username != "3600:u" || ice[0].Credential != restPassword([]byte("s"), "3600:u") {
		t.Errorf("credentials %q %q", ice[0].Username, ice[0].Credential)
	}
}

// TestPionLogBridge: levels map as documented and a flood of pion
// warnings is cut to the burst.
func TestPionLogBridge(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l := newSlogFactory(log).NewLogger("turn")
	l.Infof("per-request %d", 1)
	if !strings.Contains(buf.String(), "level=DEBUG") || !strings.Contains(buf.String(), "per-request 1") {
		t.Errorf("pion info not at debug: %s", buf.String())
	}
	buf.Reset()
	for i := 0; i < 1000; i++ {
		l.Errorf("failed to send to client %d", i)
	}
	n := strings.Count(buf.String(), "level=WARN")
	if n < pionLogBurst || n > pionLogBurst+pionLogRate*10 {
		t.Errorf("%d of 1000 pion errors logged, want about the burst of %d", n, pionLogBurst)
	}
}
