package client

import (
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestSocketNetBuffers checks that every kind of UDP socket pion opens
// through socketNet gets the larger receive buffer, as far as the kernel
// allows (net.core.rmem_max).
func TestSocketNetBuffers(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Skip("no rmem_max:", err)
	}
	rmemMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// Linux doubles the value set to allow for bookkeeping, and reports
	// the doubled value.
	want := 2 * min(udpReadBuffer, rmemMax)
	sn, err := newSocketNet()
	if err != nil {
		t.Fatal(err)
	}
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	listenUDP := func() (any, error) { return sn.ListenUDP("udp4", lo) }
	listenPacket := func() (any, error) { return sn.ListenPacket("udp4", "127.0.0.1:0") }
	dialUDP := func() (any, error) { return sn.DialUDP("udp4", nil, &net.UDPAddr{IP: lo.IP, Port: 9}) }
	for name, open := range map[string]func() (any, error){"ListenUDP": listenUDP, "ListenPacket": listenPacket, "DialUDP": dialUDP} {
		t.Run(name, func(t *testing.T) {
			c, err := open()
			if err != nil {
				t.Fatal(err)
			}
			uc := c.(*net.UDPConn)
			defer uc.Close()
			raw, err := uc.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var got int
			var gerr error
			if err := raw.Control(func(fd uintptr) {
				got, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
			}); err != nil || gerr != nil {
				t.Fatal(err, gerr)
			}
			if got < want {
				t.Errorf("SO_RCVBUF = %d, want at least %d", got, want)
			}
		})
	}
	ifs, err := sn.Interfaces()
	if err != nil || len(ifs) == 0 {
		t.Fatalf("Interfaces() = %d interfaces, %v", len(ifs), err)
	}
	if _, err := sn.InterfaceByName(ifs[0].Name); err != nil {
		t.Errorf("InterfaceByName(%q): %v", ifs[0].Name, err)
	}
}
