package turn

import (
	"errors"
	"net"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v4"
)

// TestSetSecretsKeepsAllocations: secrets replaced while the server runs
// (khadga's --turn-secret-file reload) take effect at once, for minting
// and for checking, and allocations opened before go on relaying, over UDP
// and TCP, as long as their secret stays listed.
func TestSetSecretsKeepsAllocations(t *testing.T) {
	oldSecret, newSecret := []byte("old-secret-0123456789"), []byte("new-secret-0123456789")
	s, _ := startServer(t, func(c *Config) {
		c.Secrets = [][]byte{oldSecret}
		c.AllowPeers = []string{"127.0.0.0/8"}
	})
	user, pass, _ := Mint(oldSecret, "olga", time.Hour, time.Now())
	clients := map[string]*pionturn.Client{
		"udp": newClient(t, s.UDPAddr(), user, pass),
		"tcp": newTCPClient(t, s.TCPAddr(), nil, user, pass),
	}
	relays := map[string]net.PacketConn{}
	for name, c := range clients {
		r, err := c.Allocate()
		if err != nil {
			t.Fatalf("%s: Allocate: %v", name, err)
		}
		t.Cleanup(func() { r.Close() })
		relays[name] = r
		relayRoundTrip(t, r, listenPeer(t, "127.0.0.2:0"))
	}

	for _, bad := range [][][]byte{nil, {[]byte("short")}} {
		if err := s.SetSecrets(bad); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("SetSecrets(%q): %v, want ErrInvalidConfig", bad, err)
		}
	}
	if err := s.SetSecrets([][]byte{newSecret, oldSecret}); err != nil {
		t.Fatal(err)
	}
	ice, _ := s.ICEServers("olga")
	if ice[1].Credential != restPassword(newSecret, ice[1].Username) {
		t.Fatal("after SetSecrets, ICEServers does not mint with the new first secret")
	}
	nu, np, _ := Mint(newSecret, "nina", time.Hour, time.Now())
	fresh, err := newClient(t, s.UDPAddr(), nu, np).Allocate()
	if err != nil {
		t.Fatalf("the new secret is refused: %v", err)
	}
	defer fresh.Close()
	// The old allocations relay to new peers: their permission requests
	// authenticate with the old secret, still listed.
	for name, r := range relays {
		t.Run(name, func(t *testing.T) { relayRoundTrip(t, r, listenPeer(t, "127.0.0.3:0")) })
	}
	if n := s.AllocationCount(); n != 3 {
		t.Fatalf("%d allocations after the rotation, want the 2 opened before and the new one", n)
	}

	if err := s.SetSecrets([][]byte{newSecret}); err != nil {
		t.Fatal(err)
	}
	if n := s.AllocationCount(); n != 3 {
		t.Fatalf("dropping the old secret dropped allocations: %d left of 3", n)
	}
	if err := clients["udp"].CreatePermission(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 4), Port: 9}); err == nil {
		t.Fatal("a request with a dropped secret's credentials was accepted")
	}
	if _, err := newClient(t, s.UDPAddr(), user, pass).Allocate(); err == nil {
		t.Fatal("an allocation with a dropped secret's credentials was accepted")
	}
}
