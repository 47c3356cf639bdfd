package turn

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/khadga/khadga/internal/cidr"
	pionturn "github.com/pion/turn/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Server is a running TURN server. It serves from New until Close.
type Server struct {
	cfg        Config
	log        *slog.Logger
	pion       *pionturn.Server
	ls         *Listeners // as served: capped, TLS wrapped
	metrics    *metrics
	collectors []prometheus.Collector
	quotas     *quotas
	policy     *peerPolicy
	guard      *selfGuard
	bandwidth  *bandwidth        // nil: no cap
	streams    []*streamListener // TCP and TLS, for OnAuth
	checker    *secretChecker
	secrets    *secretSet // Config.Secrets, then SetSecrets's
	relayIP    atomic.Pointer[netip.Addr]
	listenIP   netip.Addr
	publicIPOK bool // the first PublicIPSTUN check succeeded

	stop      chan struct{}  // closed by Close
	loops     sync.WaitGroup // watchLocalAddrs, watchPublicIP
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg and starts serving on ls, which it owns from then on:
// it closes them if it fails, and Close closes them.
func New(cfg Config, ls *Listeners) (*Server, error) {
	if ls == nil {
		return nil, fmt.Errorf("%w: no listeners", ErrInvalidConfig)
	}
	cfg = cfg.WithDefaults()
	if err := errors.Join(cfg.Validate(), ls.check(cfg)); err != nil {
		return nil, errors.Join(err, ls.Close())
	}
	s := &Server{cfg: cfg, log: cfg.Logger, ls: serving(ls, cfg), stop: make(chan struct{})}
	s.metrics, s.collectors = newMetrics()
	s.quotas = newQuotas(cfg, s.metrics)
	if err := s.start(); err != nil {
		return nil, errors.Join(err, ls.Close())
	}
	s.log.Info("TURN server listening",
		slog.String("udp", s.UDPAddr().String()), slog.Int("udp_sockets", len(ls.UDP)),
		slog.Any("tcp", s.TCPAddr()), slog.Bool("tls", ls.TLS != nil),
		slog.String("relay_ip", s.RelayIP().String()), slog.String("realm", cfg.Realm))
	return s, nil
}

// start builds the policy and hands the listeners to pion.
func (s *Server) start() error {
	cfg := s.cfg
	listenIP := s.UDPAddr().AddrPort().Addr().Unmap()
	s.listenIP = listenIP
	allow, _ := cidr.ParseAll(cfg.AllowPeers) // validated
	deny, _ := cidr.ParseAll(cfg.DenyPeers)
	s.policy = newPeerPolicy(allow, deny, selfAddrs(listenIP, s.ls))
	s.setRelayIP(s.firstRelayIP())
	s.refreshLocalAddrs()
	s.guard = newSelfGuard(s.policy, s.metrics)
	s.bandwidth = newBandwidth(cfg.UserBandwidth)
	s.policy.warnOpenings(s.log)

	if cfg.Registerer != nil {
		if err := register(cfg.Registerer, s.collectors); err != nil {
			return err
		}
	}
	hints := newSecretHints()
	s.secrets = newSecretSet(cfg.Secrets)
	s.checker = &secretChecker{secrets: s.secrets, hints: hints, now: cfg.now}
	checker := s.checker
	auth := &authenticator{secrets: s.secrets, hints: hints, metrics: s.metrics, now: cfg.now}

	pion, err := pionturn.NewServer(pionturn.ServerConfig{
		PacketConnConfigs: s.packetConfigs(listenIP, checker),
		ListenerConfigs:   s.listenerConfigs(listenIP, checker),
		LoggerFactory:     newSlogFactory(s.log.With(slog.String("component", "pion-turn"))),
		Realm:             cfg.Realm,
		AuthHandler:       auth.handle,
		QuotaHandler:      s.quotas.allowAllocation,
		EventHandler:      s.events(),
	})
	if err != nil {
		if cfg.Registerer != nil {
			_ = unregister(cfg.Registerer, s.collectors)
		}
		return fmt.Errorf("start pion TURN: %w", err)
	}
	s.pion = pion
	s.loops.Add(1)
	go s.watchLocalAddrs()
	if cfg.PublicIPSTUN != "" {
		s.loops.Add(1)
		go s.watchPublicIP()
	}
	return nil
}

// refreshLocalAddrs re-reads the host's interface addresses into the peer
// policy's self set.
func (s *Server) refreshLocalAddrs() {
	addrs, err := interfaceAddrs()
	if err != nil {
		s.log.Warn("TURN: reading the host's addresses", slog.Any("err", err))
		return
	}
	if s.policy.setLocal(addrs) {
		s.log.Debug("TURN: the host's addresses, denied as peers", slog.Any("addrs", addrs))
	}
}

// watchLocalAddrs re-reads the host's addresses every LocalAddrsEvery
// until Close, so that an address added while the server runs (DHCP, a
// VPN, a cloud's secondary IP) is denied as a peer too.
func (s *Server) watchLocalAddrs() {
	defer s.loops.Done()
	t := time.NewTicker(s.cfg.localAddrsEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.refreshLocalAddrs()
		}
	}
}

// relayBind is the address relay sockets bind to: the listen IP, or all
// IPv4 addresses (pion relays over UDP/IPv4 only).
func relayBind(listenIP netip.Addr) netip.Addr {
	if listenIP.Is4() && !listenIP.IsUnspecified() {
		return listenIP
	}
	return netip.IPv4Unspecified()
}

// relayGenerator is a fresh relay port allocator that counts traffic,
// keeps to the self guard, and gives out the relay address current at
// each allocation.
func (s *Server) relayGenerator(listenIP netip.Addr) pionturn.RelayAddressGenerator {
	return &countingRelay{
		relayIP: s.RelayIP,
		RelayAddressGenerator: &pionturn.RelayAddressGeneratorPortRange{
			RelayAddress: net.IP(s.RelayIP().AsSlice()), // replaced per allocation
			MinPort:      uint16(s.cfg.RelayMinPort),
			MaxPort:      uint16(s.cfg.RelayMaxPort),
			Address:      relayBind(listenIP).String(),
		},
		metrics: s.metrics,
		guard:   s.guard,
		bw:      s.bandwidth,
		buffer:  s.cfg.SocketBuffer,
	}
}

func (s *Server) packetConfigs(listenIP netip.Addr, checker *secretChecker) []pionturn.PacketConnConfig {
	out := make([]pionturn.PacketConnConfig, 0, len(s.ls.UDP))
	for _, pc := range s.ls.UDP {
		// Always: SetSecrets may add a second secret later. With one, the
		// checker returns at once.
		ic := &inspectingPacketConn{PacketConn: pc, checker: checker}
		out = append(out, pionturn.PacketConnConfig{
			PacketConn:            ic,
			RelayAddressGenerator: s.relayGenerator(listenIP),
			PermissionHandler: func(client net.Addr, peer net.IP) bool {
				return s.permit(client, peer, ic.channelBind())
			},
		})
	}
	return out
}

func (s *Server) listenerConfigs(listenIP netip.Addr, checker *secretChecker) []pionturn.ListenerConfig {
	var out []pionturn.ListenerConfig
	for _, ln := range []net.Listener{s.ls.TCP, s.ls.TLS} {
		if ln == nil {
			continue
		}
		sl := newStreamListener(ln, checker)
		sl.authTimeout, sl.unauthPerIP = s.cfg.authTimeout, s.cfg.unauthPerIP
		sl.refused = s.metrics.quota.WithLabelValues("unauthenticated_per_ip").Inc
		s.streams = append(s.streams, sl)
		out = append(out, pionturn.ListenerConfig{
			Listener:              sl,
			RelayAddressGenerator: s.relayGenerator(listenIP),
			PermissionHandler: func(client net.Addr, peer net.IP) bool {
				return s.permit(client, peer, sl.channelBind(client))
			},
		})
	}
	return out
}

// permit is pion's PermissionHandler, consulted for every CreatePermission
// and ChannelBind: the peer policy first, then the channel quota when
// channel is the number a ChannelBind asks for (0: a CreatePermission),
// then the permission quota.
//
// Pion does not tell the handler which request asks. The listener that
// read the request does (channelBind): pion reads a client's messages
// from one goroutine and handles each before it reads the next, so the
// message its reader returned last is the one being handled.
func (s *Server) permit(client net.Addr, peer net.IP, channel uint16) bool {
	ip, ok := netip.AddrFromSlice(peer)
	if !ok || !s.policy.allowed(ip) {
		s.metrics.denied.Inc()
		s.log.Debug("TURN peer denied by policy",
			slog.String("client", client.String()), slog.String("peer", peer.String()))
		return false
	}
	if channel != 0 && !s.quotas.allowChannel(client, channel) {
		return false
	}
	return s.quotas.allowPermission(client, ip.Unmap())
}

func (s *Server) events() pionturn.EventHandler {
	return pionturn.EventHandler{
		OnAuth: func(src, _ net.Addr, _, username, _, method string, ok bool) {
			if !ok {
				s.metrics.authFailures.WithLabelValues("integrity").Inc()
				s.log.Debug("TURN auth failed", slog.String("client", src.String()),
					slog.String("username", username), slog.String("method", method))
			}
		},
		OnAllocationCreated: func(src, _ net.Addr, _, username, _ string, relay net.Addr, _ int) {
			s.metrics.created.Inc()
			s.metrics.active.Inc()
			s.quotas.allocationCreated(username, src)
			s.bandwidth.assign(relay, userOf(username))
			if src.Network() == "tcp" {
				for _, sl := range s.streams {
					sl.allocated(src)
				}
			}
			s.log.Debug("TURN allocation created", slog.String("client", src.String()),
				slog.String("user", userOf(username)), slog.String("relay", relay.String()))
		},
		OnAllocationError: func(src, _ net.Addr, _, _ string) {
			s.quotas.allocationFailed(src)
		},
		OnAllocationDeleted: func(src, _ net.Addr, _, username, _ string) {
			s.metrics.active.Dec()
			s.quotas.allocationDeleted(username, src)
			if src.Network() == "tcp" {
				for _, sl := range s.streams {
					sl.released(src)
				}
			}
		},
		OnPermissionCreated: func(src, _ net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
			s.quotas.permissionCreated(src, peer)
			if c := s.guard.conn(relay); c != nil {
				c.peers.permit(peer, true)
			}
		},
		OnPermissionDeleted: func(src, _ net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
			s.quotas.permissionDeleted(src, peer)
			if c := s.guard.conn(relay); c != nil {
				c.peers.permit(peer, false)
			}
		},
		OnChannelCreated: func(src, _ net.Addr, _, _, _ string, relay, peer net.Addr, number uint16) {
			s.quotas.channelBound(src, number, true)
			if c := s.guard.conn(relay); c != nil {
				c.peers.bind(peer, true)
			}
		},
		OnChannelDeleted: func(src, _ net.Addr, _, _, _ string, relay, peer net.Addr, number uint16) {
			s.quotas.channelBound(src, number, false)
			if c := s.guard.conn(relay); c != nil {
				c.peers.bind(peer, false)
			}
		},
	}
}

// Close stops serving, closes every listener and allocation, and
// unregisters the metrics. Pion's socket goroutines end as their sockets
// close.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.loops.Wait()
		err := s.pion.Close()
		s.quotas.reset()
		s.metrics.active.Set(0)
		if s.cfg.Registerer != nil {
			err = errors.Join(err, unregister(s.cfg.Registerer, s.collectors))
		}
		if err != nil {
			s.closeErr = fmt.Errorf("close TURN server: %w", err)
		}
	})
	return s.closeErr
}

// AllocationCount is the number of open allocations, for draining.
func (s *Server) AllocationCount() int { return s.pion.AllocationCount() }

// UDPAddr is the bound UDP address (all UDP sockets share it).
func (s *Server) UDPAddr() *net.UDPAddr { return s.ls.UDP[0].LocalAddr().(*net.UDPAddr) }

// TCPAddr is the bound TCP address, nil without a TCP listener.
func (s *Server) TCPAddr() *net.TCPAddr { return tcpAddr(s.ls.TCP) }

// TLSAddr is the bound TURNS address, nil when TLS is off.
func (s *Server) TLSAddr() *net.TCPAddr { return tcpAddr(s.ls.TLS) }

func tcpAddr(ln net.Listener) *net.TCPAddr {
	if ln == nil {
		return nil
	}
	a, _ := ln.Addr().(*net.TCPAddr)
	return a
}

// RelayIP is the address clients are given for their relays now.
func (s *Server) RelayIP() netip.Addr { return *s.relayIP.Load() }

// setRelayIP makes ip the relay address of new allocations and of the
// ICE servers, and one of the server's own addresses for the peer policy.
// Open allocations keep the address they were given.
func (s *Server) setRelayIP(ip netip.Addr) {
	s.relayIP.Store(&ip)
	s.policy.relayAt(ip, relayBind(s.listenIP))
}

// firstRelayIP picks the relay address at start: the configured public
// IP, the one the STUN server reports (PublicIPSTUN), the listen IP, or
// the host's first IPv4 address that is not loopback or link-local
// (a private one on a LAN).
func (s *Server) firstRelayIP() netip.Addr {
	cfg := s.cfg
	if cfg.PublicIP != "" {
		ip, _ := netip.ParseAddr(cfg.PublicIP) // validated
		return ip.Unmap()
	}
	if cfg.PublicIPSTUN != "" {
		ip, err := s.askPublicIP()
		if err == nil {
			s.publicIPOK = true
			return ip
		}
		s.log.Warn("TURN: asking the STUN server for the public IP failed; trying again soon",
			slog.String("stun", cfg.PublicIPSTUN), slog.Any("err", err))
	}
	return defaultRelayIP(s.listenIP, s.log)
}

// defaultRelayIP is the listen IP, or the host's first IPv4 address that
// is not loopback or link-local (IsGlobalUnicast: a private one counts).
func defaultRelayIP(listenIP netip.Addr, log *slog.Logger) netip.Addr {
	if listenIP.Is4() && !listenIP.IsUnspecified() {
		return listenIP
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				if ip := p.Addr().Unmap(); ip.Is4() && ip.IsGlobalUnicast() {
					return ip
				}
			}
		}
	}
	log.Warn("TURN has no public IP and found no IPv4 address but loopback and link-local ones; relaying on 127.0.0.1 (set the public IP)")
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

// selfAddrs are the server's listen IPs, denied as peers so that nobody
// relays into its admin or metrics ports. The relay address (relayAt) and
// the host's interface addresses join them in the policy, and are updated
// while the server runs (watchPublicIP, watchLocalAddrs).
func selfAddrs(listenIP netip.Addr, ls *Listeners) []netip.Addr {
	var out []netip.Addr
	if !listenIP.IsUnspecified() {
		out = append(out, listenIP)
	}
	if ls.TLS != nil {
		if ap, err := netip.ParseAddrPort(ls.TLS.Addr().String()); err == nil && !ap.Addr().IsUnspecified() {
			out = append(out, ap.Addr())
		}
	}
	return out
}
