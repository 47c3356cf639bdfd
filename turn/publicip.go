package turn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v3"
)

// Discovering the public IP (Config.PublicIPSTUN): a STUN binding request
// (RFC 8489) to the named server from this host, whose answer's
// XOR-MAPPED-ADDRESS is the address the request came from as the far side
// saw it, that is, the public IP of the NAT in front of the server.

// STUN transaction timing: the request is sent again after 500 ms, 1 s
// and 2 s (RFC 8489 6.2.1, with fewer retries), then given up.
var stunRetries = []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second}

// publicIPRetry bounds the wait after a failed check.
const publicIPRetry = time.Minute

// errNoPublicIP: the STUN server's answer holds no usable IPv4 address.
var errNoPublicIP = errors.New("the STUN answer holds no public IPv4 address")

// askPublicIP asks PublicIPSTUN once.
func (s *Server) askPublicIP() (netip.Addr, error) {
	var budget time.Duration
	for _, d := range stunRetries {
		budget += d
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget+time.Second)
	defer cancel()
	go func() { // Close ends a check in progress
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return stunMappedIP(ctx, s.cfg.PublicIPSTUN, s.listenIP)
}

// stunMappedIP sends a binding request to server from laddr (any address
// when unspecified) and returns the IPv4 address of its answer.
func stunMappedIP(ctx context.Context, server string, laddr netip.Addr) (netip.Addr, error) {
	var d net.Dialer
	if laddr.Is4() && !laddr.IsUnspecified() && !laddr.IsLoopback() {
		d.LocalAddr = &net.UDPAddr{IP: laddr.AsSlice()}
	}
	conn, err := d.DialContext(ctx, "udp4", server)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("STUN server %s: %w", server, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return netip.Addr{}, err
	}
	buf := make([]byte, 1500)
	for _, wait := range stunRetries {
		if _, err := conn.Write(req.Raw); err != nil {
			return netip.Addr{}, fmt.Errorf("STUN server %s: %w", server, err)
		}
		ip, err := readBinding(conn, buf, req.TransactionID, time.Now().Add(wait))
		if err == nil || !isTimeout(err) || ctx.Err() != nil {
			return ip, err
		}
	}
	return netip.Addr{}, fmt.Errorf("STUN server %s did not answer", server)
}

// readBinding reads until the answer to transaction id arrives or the
// deadline passes; anything else that arrives is ignored.
func readBinding(conn net.Conn, buf []byte, id [stun.TransactionIDSize]byte, deadline time.Time) (netip.Addr, error) {
	if err := conn.SetReadDeadline(deadline); err != nil {
		return netip.Addr{}, err
	}
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return netip.Addr{}, err
		}
		m := &stun.Message{Raw: buf[:n]}
		if m.Decode() != nil || m.TransactionID != id || m.Type != stun.BindingSuccess {
			continue
		}
		var xa stun.XORMappedAddress
		if err := xa.GetFrom(m); err != nil {
			var ma stun.MappedAddress
			if ma.GetFrom(m) != nil {
				return netip.Addr{}, errNoPublicIP
			}
			xa.IP = ma.IP
		}
		ip, ok := netip.AddrFromSlice(xa.IP)
		if ip = ip.Unmap(); !ok || !ip.Is4() || !ip.IsGlobalUnicast() {
			return netip.Addr{}, fmt.Errorf("%w (got %v)", errNoPublicIP, xa.IP)
		}
		return ip, nil
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// watchPublicIP asks PublicIPSTUN every PublicIPEvery (within
// publicIPRetry after a failure) until Close, and moves the relay address
// when the answer changes. A failed check keeps the address in use.
func (s *Server) watchPublicIP() {
	defer s.loops.Done()
	every := s.cfg.PublicIPEvery
	lastErr := ""
	first := every
	if !s.publicIPOK {
		first = min(every, publicIPRetry)
	}
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ip, err := s.askPublicIP()
		next := every
		switch {
		case err != nil:
			next = min(every, publicIPRetry)
			if err.Error() != lastErr {
				s.log.Warn("TURN: checking the public IP failed; the relay address stays",
					slog.String("stun", s.cfg.PublicIPSTUN), slog.String("relay_ip", s.RelayIP().String()), slog.Any("err", err))
			}
			lastErr = err.Error()
		case ip != s.RelayIP():
			lastErr = ""
			old := s.RelayIP()
			s.setRelayIP(ip) // before the log line says so: an operator (or a test) may act on it
			s.log.Info("TURN public IP changed; new allocations get the new relay address",
				slog.String("old", old.String()), slog.String("new", ip.String()))
		default:
			lastErr = ""
		}
		if s.cfg.onPublicIP != nil {
			s.cfg.onPublicIP(ip, err)
		}
		t.Reset(next)
	}
}
