package turn

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// readStreamSTUN reads one STUN message from a TURN-over-TCP stream.
func readStreamSTUN(c net.Conn) (*stun.Message, error) {
	hdr := make([]byte, stunHeaderLen)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[2:4]))
	if _, err := io.ReadFull(c, body); err != nil {
		return nil, err
	}
	m := &stun.Message{Raw: append(hdr, body...)}
	return m, m.Decode()
}

// tcpAllocate opens a TCP connection and asks for a relay as a client
// does: an unauthenticated Allocate for the realm and nonce, then, once
// start is closed, the authenticated one. It returns whether that one
// succeeded; the connection stays open until the test ends.
func tcpAllocate(t *testing.T, server *net.TCPAddr, user, pass string, ready *sync.WaitGroup, start <-chan struct{}) (bool, error) {
	c, err := net.DialTimeout("tcp4", server.String(), waitTimeout)
	if err != nil {
		ready.Done()
		return false, err
	}
	t.Cleanup(func() { c.Close() })
	return tcpAllocateOn(c, user, pass, ready, start)
}

// tcpAllocateOn is tcpAllocate on an open connection.
func tcpAllocateOn(c net.Conn, user, pass string, ready *sync.WaitGroup, start <-chan struct{}) (bool, error) {
	c.SetDeadline(time.Now().Add(4 * waitTimeout))
	transport := rawAttr(attrRequestedTransport, []byte{protoUDP, 0, 0, 0})
	first := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), transport, stun.Fingerprint)
	if _, err := c.Write(first.Raw); err != nil {
		ready.Done()
		return false, err
	}
	res, err := readStreamSTUN(c)
	ready.Done()
	if err != nil {
		return false, err
	}
	var realm stun.Realm
	var nonce stun.Nonce
	if realm.GetFrom(res) != nil || nonce.GetFrom(res) != nil {
		return false, fmt.Errorf("no realm or nonce in %v", res)
	}
	<-start
	req := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), transport,
		stun.NewUsername(user), realm, nonce, stun.NewLongTermIntegrity(user, realm.String(), pass), stun.Fingerprint)
	if _, err := c.Write(req.Raw); err != nil {
		return false, err
	}
	if res, err = readStreamSTUN(c); err != nil {
		return false, err
	}
	return res.Type.Class == stun.ClassSuccessResponse, nil
}

// TestUserQuotaUnderConcurrency: 400 TCP connections of one user send
// their authenticated Allocate at the same moment; with a quota of 2, at
// most 2 get a relay. The quota used to be checked before and counted
// after the allocation, and such a burst got more (issue 14, point 14).
func TestUserQuotaUnderConcurrency(t *testing.T) {
	const conns, quota = 400, 2
	s, _ := startServer(t, func(c *Config) {
		c.UserQuota = quota
		c.unauthPerIP = conns // all from 127.0.0.1: the burst, not the per-IP cap, is tested here
	})
	user, pass := mint("greedy")
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	var mu sync.Mutex
	granted, failed := 0, 0
	for range conns {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ok, err := tcpAllocate(t, s.TCPAddr(), user, pass, &ready, start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
			}
			if ok {
				granted++
			}
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	if failed > 0 {
		t.Errorf("%d of %d connections failed", failed, conns)
	}
	if granted > quota {
		t.Fatalf("%d allocations granted to one user with a quota of %d", granted, quota)
	}
	if granted == 0 {
		t.Fatal("no allocation granted")
	}
	if n := s.AllocationCount(); n != granted {
		t.Errorf("AllocationCount %d, want %d", n, granted)
	}
}

// TestQuotaReservesAtOnce: pion asks the QuotaHandler, creates the
// allocation, then reports it. Requests whose reports have not come yet
// must count: of 400 checks for one user before any report, only the
// quota's worth pass, and a failed allocation gives its place back. This
// is the window that concurrent connections hit (issue 14, point 14).
func TestQuotaReservesAtOnce(t *testing.T) {
	m, _ := newMetrics()
	q := newQuotas(Config{UserQuota: 2, TotalQuota: 3, PermissionQuota: 1}.WithDefaults(), m)
	src := func(i int) net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 10000 + i} }
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := []int{}
	for i := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if q.allowAllocation("2000000000:greedy", "khadga", src(i)) {
				mu.Lock()
				passed = append(passed, i)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(passed) != 2 {
		t.Fatalf("%d of 400 concurrent checks passed with a quota of 2", len(passed))
	}
	q.allocationCreated("2000000000:greedy", src(passed[0]))
	q.allocationFailed(src(passed[1])) // no relay port, say: the place is free again
	if !q.allowAllocation("2000000000:greedy", "khadga", src(1000)) {
		t.Fatal("the place of a failed allocation was not given back")
	}
	if q.allowAllocation("2000000000:greedy", "khadga", src(1001)) {
		t.Fatal("a third allocation passed the user quota")
	}
	if !q.allowAllocation("2000000000:other", "khadga", src(1002)) || q.allowAllocation("2000000000:third", "khadga", src(1003)) {
		t.Fatal("the total quota of 3 does not count reservations")
	}
	// A reservation that pion never reports on lapses.
	q.now = func() time.Time { return time.Now().Add(2 * reserveTTL) }
	if !q.allowAllocation("2000000000:third", "khadga", src(1003)) {
		t.Fatal("lapsed reservations still count")
	}
}

// waitClosed reads from c until the server closes it, and returns how
// long that took; the test fails if it stays open for limit.
func waitClosed(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	buf := make([]byte, 1500)
	for {
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the connection is still open after %v", limit)
			}
			return time.Since(start)
		}
	}
}

// TestUnauthenticatedStreams: a TCP or TLS connection that does not
// authenticate is closed within authTimeout of its accept, even when it
// keeps talking; one that authenticated stays; and one client IP holds at
// most unauthPerIP unauthenticated connections. Before, each could hold
// one of MaxTCPConns slots for 20 minutes (issue 14, point 15).
func TestUnauthenticatedStreams(t *testing.T) {
	cert, _ := selfSigned(t)
	const timeout = 500 * time.Millisecond
	s, _ := startServerOn(t, ListenConfig{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0"}, func(c *Config) {
		c.authTimeout = timeout
		c.UserQuota = 1
		c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }
	})
	dial := func(addr net.Addr, src string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp4", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	t.Run("silent", func(t *testing.T) {
		for _, addr := range []net.Addr{s.TCPAddr(), s.TLSAddr()} {
			if d := waitClosed(t, dial(addr, "127.0.0.1"), waitTimeout); d > timeout+3*time.Second {
				t.Errorf("a silent connection to %v was closed after %v", addr, d)
			}
		}
	})
	t.Run("talking without credentials", func(t *testing.T) {
		c := dial(s.TCPAddr(), "127.0.0.1")
		start := time.Now()
		for time.Since(start) < 2*timeout {
			m := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
			if _, err := c.Write(m.Raw); err != nil {
				break // closed: the point
			}
			if _, err := readStreamSTUN(c); err != nil {
				break
			}
		}
		waitClosed(t, c, waitTimeout)
		if d := time.Since(start); d > timeout+3*time.Second {
			t.Errorf("binding requests kept an unauthenticated connection for %v", d)
		}
	})
	t.Run("authenticated stays", func(t *testing.T) {
		user, pass := mint("patient")
		var ready sync.WaitGroup
		ready.Add(1)
		start := make(chan struct{})
		close(start)
		c, err := net.DialTimeout("tcp4", s.TCPAddr().String(), waitTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if ok, err := tcpAllocateOn(c, user, pass, &ready, start); !ok || err != nil {
			t.Fatalf("allocate: %v %v", ok, err)
		}
		time.Sleep(3 * timeout) // waiting out the deadline that must not apply
		m := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		c.SetDeadline(time.Now().Add(waitTimeout))
		if _, err := c.Write(m.Raw); err != nil {
			t.Fatal(err)
		}
		if res, err := readStreamSTUN(c); err != nil || res.Type != stun.BindingSuccess {
			t.Fatalf("an authenticated connection after %v: %v %v", 3*timeout, res, err)
		}
	})
	t.Run("refused allocation", func(t *testing.T) {
		// Valid credentials whose allocation the user quota refuses do
		// not keep the connection: pion authenticates before it checks
		// quotas, and one user's refused connections must not fill
		// MaxTCPConns for everyone.
		user, pass := mint("greedy")
		var conns []net.Conn
		for i := range 2 {
			var ready sync.WaitGroup
			ready.Add(1)
			start := make(chan struct{})
			close(start)
			c := dial(s.TCPAddr(), "127.0.0.1")
			ok, err := tcpAllocateOn(c, user, pass, &ready, start)
			if err != nil || ok != (i == 0) {
				t.Fatalf("allocation %d: granted %v, %v; want only the first granted (quota 1)", i, ok, err)
			}
			conns = append(conns, c)
		}
		if d := waitClosed(t, conns[1], waitTimeout); d > timeout+3*time.Second {
			t.Errorf("a connection whose allocation was refused was closed after %v", d)
		}
	})
	t.Run("per IP", func(t *testing.T) {
		// A server of its own with a long timeout, so that "closed at
		// once" cannot be the timeout.
		s, reg := startServer(t, func(c *Config) { c.unauthPerIP = 3 })
		for range 3 {
			dial(s.TCPAddr(), "127.0.0.3")
		}
		if d := waitClosed(t, dial(s.TCPAddr(), "127.0.0.3"), waitTimeout); d > defaultAuthTimeout/2 {
			t.Errorf("the 4th unauthenticated connection of one IP was closed after %v, want at once", d)
		}
		other := dial(s.TCPAddr(), "127.0.0.4")
		m := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		other.SetDeadline(time.Now().Add(waitTimeout))
		if _, err := other.Write(m.Raw); err != nil {
			t.Fatal(err)
		}
		if _, err := readStreamSTUN(other); err != nil {
			t.Fatalf("another IP is refused too: %v", err)
		}
		if n := metricValue(t, reg, "khadga_turn_quota_refusals_total", map[string]string{"quota": "unauthenticated_per_ip"}); n < 1 {
			t.Errorf("refusals %v, want at least 1", n)
		}
	})
}

// TestSecretWorkBounded: with 16 secrets, a client sending messages with
// MESSAGE-INTEGRITY made with none of them makes the server try every
// secret only for its first few messages (scanBurst), then only the first;
// a client with credentials of the last secret, from another address, is
// served, and its later messages cost one try each. Before, every message
// cost 16 (issue 14, point 16).
func TestSecretWorkBounded(t *testing.T) {
	secrets := make([][]byte, maxSecrets)
	for i := range secrets {
		secrets[i] = []byte(fmt.Sprintf("rotation-secret-%02d", i))
	}
	s, _ := startServer(t, func(c *Config) { c.Secrets = secrets })
	const n = 300
	start := time.Now()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	user, pass, _ := Mint([]byte("a secret the server does not have"), "mallory", time.Hour, time.Now())
	for range n {
		m := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
			rawAttr(attrRequestedTransport, []byte{protoUDP, 0, 0, 0}), stun.NewUsername(user), stun.NewRealm(DefaultRealm),
			stun.NewNonce("nonce"), stun.NewLongTermIntegrity(user, DefaultRealm, pass), stun.Fingerprint)
		if _, err := conn.WriteTo(m.Raw, s.UDPAddr()); err != nil {
			t.Fatal(err)
		}
	}
	// Every message is answered (stale nonce): once all answers are in,
	// every message went through the checker.
	conn.SetReadDeadline(time.Now().Add(waitTimeout))
	buf := make([]byte, 1500)
	for got := 0; got < n; got++ {
		if _, _, err := conn.ReadFrom(buf); err != nil {
			t.Fatalf("%d answers of %d: %v", got, n, err)
		}
	}
	scans := scanBurst + scanRate*time.Since(start).Seconds() // tokens refill meanwhile
	if tried, bound := s.checker.hmacs.Load(), int64(n+maxSecrets*scans); tried > bound {
		t.Fatalf("%d forged messages made the server try %d secrets, want at most %d", n, tried, bound)
	}

	before := s.checker.hmacs.Load()
	goodUser, goodPass, _ := Mint(secrets[len(secrets)-1], "alice", time.Hour, time.Now())
	other, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	c := startClient(t, other, s.UDPAddr().String(), goodUser, goodPass)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("a client of the last secret: %v", err)
	}
	defer relay.Close()
	first := s.checker.hmacs.Load() - before
	if _, err := c.Allocate(); err == nil { // authenticated, answered 437
		t.Fatal("a second Allocate on one 5-tuple succeeded")
	}
	if later := s.checker.hmacs.Load() - before - first; later > 1 {
		t.Errorf("a known username cost %d tries after its first message, want at most 1", later)
	}
}

// TestSecretScansPerIPv6Prefix: the addresses of one IPv6 /64, which one
// host usually holds whole, share one budget of full secret scans; another
// /64, and an IPv4 address, have their own.
func TestSecretScansPerIPv6Prefix(t *testing.T) {
	now := time.Unix(1000, 0)
	c := &secretChecker{now: func() time.Time { return now }}
	secrets := [][]byte{[]byte("first"), []byte("second")}
	from := func(ip string) net.Addr { return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(ip)) }
	for i := range int(scanBurst) {
		// A new address of the /64 for every failed scan.
		src := from(fmt.Sprintf("[2001:db8:1:2::%x]:3478", i+1))
		if _, full := c.candidates(secrets, "1:user", src, now); !full {
			t.Fatalf("scan %d of the /64 refused within the burst", i+1)
		}
		c.charge(src)
	}
	if _, full := c.candidates(secrets, "1:user", from("[2001:db8:1:2:ffff::1]:3478"), now); full {
		t.Fatal("a fresh address of a /64 that spent its scans got a full scan")
	}
	for _, other := range []string{"[2001:db8:1:3::1]:3478", "192.0.2.1:3478"} {
		if _, full := c.candidates(secrets, "1:user", from(other), now); !full {
			t.Fatalf("%s lost its scans to another /64", other)
		}
	}
}

// TestSecretScansTableCannotBeReset: once maxScans sources have spent
// their scans, a new source gets no full scan, and those that spent theirs
// stay spent. The table was emptied when full, so a host with more /64s
// than it holds (a /48 has 65,536) gave every one of them a new budget
// each time round. Sources whose budgets are whole again are forgotten to
// make room, at most once a second.
func TestSecretScansTableCannotBeReset(t *testing.T) {
	now := time.Unix(1000, 0)
	c := &secretChecker{now: func() time.Time { return now }}
	secrets := [][]byte{[]byte("first"), []byte("second")}
	from := func(i int) net.Addr {
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(fmt.Sprintf("2001:db8:%x:%x::1", i>>16, i&0xffff)), 3478))
	}
	scan := func(i int) bool {
		_, full := c.candidates(secrets, "1:user", from(i), now)
		if full {
			c.charge(from(i))
		}
		return full
	}
	for i := range maxScans {
		for range int(scanBurst) {
			if !scan(i) {
				t.Fatalf("source %d refused a scan within its burst", i)
			}
		}
	}
	if scan(maxScans) {
		t.Fatal("a new source got a full scan while every remembered one was spending")
	}
	if scan(0) {
		t.Fatal("a source that spent its scans got a new budget after the table filled")
	}
	now = now.Add(time.Duration(float64(time.Second) * scanBurst / scanRate)) // every budget whole again
	if !scan(maxScans + 1) {
		t.Fatal("a new source got no full scan once the others' budgets were whole again")
	}
}

// fromAddr is a connection that says it comes from addr: a client of any
// address of an IPv6 /64 (loopback offers one).
type fromAddr struct {
	net.Conn
	addr net.Addr
}

func (c fromAddr) RemoteAddr() net.Addr { return c.addr }

// TestUnauthenticatedStreamsPerIPv6Prefix: the addresses of one IPv6 /64,
// which one host usually holds whole, share one cap of unauthenticated
// TCP and TLS connections; another /64, and an IPv4 address, have their
// own. The cap was per address: one host could open MaxTCPConns
// connections from as many addresses of its /64, hold every slot without
// authenticating, and take them again every authTimeout.
func TestUnauthenticatedStreamsPerIPv6Prefix(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newStreamListener(ln, &secretChecker{})
	t.Cleanup(func() { l.Close() })
	track := func(ip string) bool {
		t.Helper()
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		sc, err := l.track(fromAddr{a, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(ip))})
		if err != nil {
			t.Fatal(err)
		}
		return sc != nil
	}
	for i := range defaultUnauthPerIP {
		if !track(fmt.Sprintf("[2001:db8:1:2::%x]:40000", i+1)) {
			t.Fatalf("connection %d of the /64 refused within the cap of %d", i+1, defaultUnauthPerIP)
		}
	}
	if track("[2001:db8:1:2:ffff::1]:40000") {
		t.Fatalf("a fresh address of a /64 that holds %d unauthenticated connections got another", defaultUnauthPerIP)
	}
	for _, other := range []string{"[2001:db8:1:3::1]:40000", "192.0.2.1:40000"} {
		if !track(other) {
			t.Fatalf("%s lost its connections to another /64", other)
		}
	}
}
