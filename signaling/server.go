// Package signaling is khadga's signaling server: the HTTP API that signs
// people in (register, login, token refresh, WebSocket tickets), and the
// WebSocket endpoint /ws where the hub tracks presence and rooms and relays the
// WebRTC handshake between peers. It never carries chat or media.
//
// A Server takes a Config and a listener:
//
//	srv, err := signaling.New(cfg, ln)
//	go srv.Serve(ctx) // returns after ctx ends and clients were told to reconnect
//	defer srv.Close()
//
// It opens no socket itself: the caller listens, and hands in the other
// listeners too (Config.AdminListener from admin.Listen, and
// Config.MetricsListener), and may hand in an open store (Config.Store).
// The server closes what it was given. khadga serve opens the store first,
// takes the TURN secret from it and starts the TURN server, so that the
// signaling server gets the TURN server's ICEServers at New.
//
// Its parts live in sub-packages: store (the bbolt file), auth (passwords,
// tokens, login limits, tickets) and hub (sessions, rooms, relay).
//
// The log at info says why a sign-in, a WebSocket (origin, credentials,
// too many connections) or a bot token was refused, and the hub's why it
// closed a connection; no line holds a token, password, code or TURN
// credential. What clients can cause has a budget of lines per reason
// (refusals.go, internal/loglimit); the audit log keeps every sign-in.
package signaling

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/khadga/khadga/internal/cidr"
	"github.com/khadga/khadga/internal/rawsock"
	"github.com/khadga/khadga/signaling/admin"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/hub"
	"github.com/khadga/khadga/signaling/store"
	"github.com/prometheus/client_golang/prometheus"
)

// hashWait bounds how long a request waits for a password worker before
// the server answers 503.
const hashWait = 5 * time.Second

// Server is a running signaling server.
type Server struct {
	cfg         Config
	log         *slog.Logger
	ln          net.Listener
	store       store.Backend
	keys        *auth.Keys
	sessions    *auth.Sessions
	bots        *auth.Bots
	limiter     loginLimits
	hashGate    *auth.HashGate // bounds argon2id work (issue 14, point 1)
	registers   rateLimit      // registrations per address
	resends     rateLimit      // verification emails per account and per address
	resetAsks   rateLimit      // password-reset asks per address
	resetFails  rateLimit      // failed password-reset confirmations per address
	roomWrites  rateLimit      // room claims and changes per user
	refreshes   rateLimit      // refreshes per sign-in (accountWrites)
	enrolls     rateLimit      // two-factor enrolments per user (accountWrites)
	tickets     *auth.Tickets
	metrics     *metrics
	refusals    refusalLogs
	mailer      *mailer // nil unless the email check is on
	started     time.Time
	trusted     []netip.Prefix // reverse proxies, from Config.TrustedProxies
	proxyWarned atomic.Bool    // the missing --trust-proxy warning was logged
	metricsHTTP *http.Server   // on Config.MetricsListener; nil when not set
	hub         *hub.Hub
	closer      sessionCloser // the hub's side of revocation (revoke.go)
	keyUsers    keyUsers      // who authenticated with which signing key
	http        *http.Server
	admin       *http.Server // on Config.AdminListener; nil when not set
	serving     atomic.Bool
	done        chan struct{} // closed by Close
	closeMu     sync.Once
	closeErr    error

	// resetMails holds a slot for each password-reset email being sent
	// (reset.go), after the answer; mailsWG waits for them at Close, and
	// mailsMu orders a new one against Close (none starts once done is
	// closed).
	resetMails chan struct{}
	mailsWG    sync.WaitGroup
	mailsMu    sync.Mutex
}

// New prepares a server on ln with the store cfg.Store, or else the one it
// opens in cfg.DataDir (creating it and its keys on first run). Serve
// starts it. The listeners and the store are the server's from then on,
// closed by Close; New leaves them to the caller when it fails.
func New(cfg Config, ln net.Listener) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("signaling: invalid config: %w", err)
	}
	st := cfg.Store
	if st == nil {
		var err error
		if st, err = store.Open(cfg.StorePath(), store.Options{Logger: cfg.Logger}); err != nil {
			return nil, fmt.Errorf("signaling: %w", err)
		}
	}
	s := &Server{cfg: cfg, log: cfg.Logger, ln: ln, store: st, done: make(chan struct{}), started: time.Now()}
	if err := s.init(); err != nil {
		if cfg.Store == nil {
			st.Close()
		}
		return nil, fmt.Errorf("signaling: %w", err)
	}
	return s, nil
}

func (s *Server) init() error {
	var err error
	s.metrics = newMetrics(s.cfg.Registerer)
	s.refusals = newRefusalLogs(s.log)
	for _, p := range s.cfg.TrustedProxies {
		pr, _ := cidr.Parse(p) // validated
		s.trusted = append(s.trusted, pr)
	}
	if s.cfg.SMTPURL != "" {
		if s.mailer, err = newMailer(s.cfg.SMTPURL, s.cfg.SMTPFrom); err != nil {
			return err
		}
	}
	if s.keys, err = auth.NewKeys(s.store, auth.KeysOptions{Logger: s.log, Now: s.cfg.Now, Retired: s.keyRetired}); err != nil {
		return err
	}
	s.sessions = auth.NewSessions(s.store, s.keys, auth.SessionsOptions{
		AccessTTL: s.cfg.AccessTTL, RefreshTTL: s.cfg.RefreshTTL, Now: s.cfg.Now,
	})
	s.bots = auth.NewBots(s.store, s.keys, auth.BotsOptions{AccessTTL: s.cfg.BotAccessTTL, Now: s.cfg.Now, Logger: s.log})
	s.newLimits()
	if s.cfg.Registerer != nil {
		if err := s.cfg.Registerer.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "khadga_login_limiter_keys", Help: "Client addresses and accounts the login limiter tracks.",
		}, func() float64 { return float64(s.limiter.Len()) })); err != nil {
			return err
		}
	}
	s.hashGate = auth.NewHashGate(s.cfg.PasswordWorkers, 4*s.cfg.PasswordWorkers, hashWait)
	s.resetMails = make(chan struct{}, maxResetMails)
	s.tickets = auth.NewTickets(auth.TicketsOptions{Now: s.cfg.Now, PerUser: s.cfg.TicketsPerUser, PerAddr: s.cfg.TicketsPerAddr,
		Recheck: s.account})
	s.hub, err = hub.New(hub.Config{
		Logger:             s.log,
		ResumeWindow:       s.cfg.ResumeWindow,
		ReadLimit:          s.cfg.ReadLimit,
		MessageRate:        s.cfg.MessageRate,
		MessageBurst:       s.cfg.MessageBurst,
		SignalBytesRate:    s.cfg.SignalBytesRate,
		SignalBurstBytes:   s.cfg.SignalBurstBytes,
		MaxConnsPerUser:    s.cfg.MaxConnsPerUser,
		PresenceScope:      s.cfg.PresenceScope,
		MaxPresenceList:    s.cfg.MaxPresenceList,
		MaxRoomsPerSession: s.cfg.MaxRoomsPerSession,
		MaxRoomMembers:     s.cfg.MaxRoomMembers,
		RoomPolicy:         s.roomPolicy,
		ICEServers:         s.cfg.ICEServers,
		Registerer:         s.cfg.Registerer,
		Delivery:           s.clusterDelivery(),
	})
	if err != nil {
		return err
	}
	s.closer = s.hub
	if c := s.cfg.Cluster; c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c.ServeTickets(s.redeemForNode)
		c.OnRevocationGap(s.recheckSessions)
		if err := c.Start(ctx, s.hub); err != nil {
			return fmt.Errorf("joining the cluster: %w", err)
		}
		s.closer = c
	}
	s.admin = s.adminServer()
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.cfg.HeaderTimeout, // slowloris: a client must finish its headers
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	limit := newConnLimit(s.cfg.MaxConnsPerAddr, s.connsExempt, s.log, s.metrics.connsRefused)
	s.http.ConnState = limit.connState
	return nil
}

// connsExempt says which clients Config.MaxConnsPerAddr does not count:
// loopback, private and link-local addresses (a network's own hosts, and
// the address of a reverse proxy that is not in --trust-proxy, behind
// which every client would share one budget) and the trusted proxies,
// which guard their own clients.
func (s *Server) connsExempt(a netip.Addr) bool {
	if a.IsLoopback() {
		return !s.cfg.countLoopback
	}
	return a.IsPrivate() || a.IsLinkLocalUnicast() || s.isTrusted(a.String())
}

// Hub is the server's hub (for in-process tools and tests).
func (s *Server) Hub() *hub.Hub { return s.hub }

// HubStats is a snapshot of the hub's gauges and counters.
func (s *Server) HubStats() hub.Stats { return s.hub.Stats() }

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Store is the server's store, for admin commands running in-process.
func (s *Server) Store() store.Backend { return s.store }

// Keys signs and verifies access tokens (for `khadga token` in-process).
func (s *Server) Keys() *auth.Keys { return s.keys }

// Serve serves HTTP and WebSocket clients until ctx ends, then shuts down
// gracefully: it stops accepting, tells every WebSocket client to reconnect,
// waits up to ShutdownGrace for in-flight writes, and closes the store.
func (s *Server) Serve(ctx context.Context) error {
	s.serving.Store(true)
	errc := make(chan error, 1)
	go func() {
		if s.cfg.TLS != nil {
			s.http.TLSConfig = s.cfg.TLS
			// ServeTLS keeps the config's ALPN protocols (ACME's
			// acme-tls/1). TLS reads and writes its socket with raw
			// system calls, as wsconn does a plain one (rawsock).
			errc <- s.http.ServeTLS(rawListener{s.ln}, "", "")
			return
		}
		errc <- s.http.Serve(s.ln)
	}()
	if s.admin != nil {
		go s.admin.Serve(s.cfg.AdminListener)
	}
	if s.cfg.MetricsListener != nil && s.cfg.Gatherer != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.metricsHandler())
		s.metricsHTTP = &http.Server{Handler: mux, ReadHeaderTimeout: s.cfg.HeaderTimeout}
		go s.metricsHTTP.Serve(s.cfg.MetricsListener)
	}
	go s.purgeLoop(ctx)
	go s.followKeys(ctx)
	select {
	case err := <-errc:
		s.serving.Store(false)
		s.Close()
		return fmt.Errorf("signaling: serve: %w", err)
	case <-ctx.Done():
	case <-s.done:
		return nil
	}
	return s.shutdown()
}

func (s *Server) shutdown() error {
	s.serving.Store(false)
	s.log.Info("shutting down: telling clients to reconnect")
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	// Stop accepting first, so that clients told to reconnect land on
	// another node (or, on one node, find this one gone).
	_ = s.ln.Close()
	// HTTP requests finish meanwhile, not before: net/http's Shutdown
	// waits up to five seconds for a connection that has sent no request
	// yet (a proxy's spare connection, a port scan), which would leave
	// the WebSocket clients no grace at all.
	httpDone := make(chan error, 1)
	go func() { httpDone <- s.http.Shutdown(ctx) }()
	herr := s.hub.Shutdown(ctx)
	if s.cfg.Cluster != nil {
		// The clients reconnect to the other nodes and claim their
		// sessions from this one, which answers until they all moved.
		s.cfg.Cluster.Drain(ctx)
	}
	serr := <-httpDone
	if errors.Is(serr, context.DeadlineExceeded) || errors.Is(serr, net.ErrClosed) {
		// Idle and silent connections are closed by Close below; the
		// listener was closed above.
		serr = nil
	}
	return errors.Join(herr, serr, s.Close())
}

// Close stops the server at once and closes the store. It is safe to call
// more than once and after Serve returned.
func (s *Server) Close() error {
	s.closeMu.Do(func() {
		s.serving.Store(false)
		close(s.done)
		// A cancelled context makes Shutdown drop every socket at once.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		s.hub.Shutdown(ctx)
		cerr := s.http.Close()
		s.ln.Close() // in case Serve never ran; an error means it was closed already
		if s.admin != nil {
			s.admin.Close()
			s.cfg.AdminListener.Close()
		}
		if s.cfg.MetricsListener != nil {
			s.cfg.MetricsListener.Close()
		}
		if s.cfg.Cluster != nil {
			s.cfg.Cluster.Close()
		}
		s.mailsMu.Lock() // a reset mail that saw done open has been counted
		s.mailsMu.Unlock()
		s.mailsWG.Wait() // each is bounded by the mailer's timeout
		s.closeErr = errors.Join(cerr, s.store.Close())
	})
	return s.closeErr
}

// adminServer serves the admin operations on Config.AdminListener, where
// `khadga user`, `token` and `backup` reach the store while this process
// holds it; nil without a listener.
func (s *Server) adminServer() *http.Server {
	if s.cfg.AdminListener == nil {
		return nil
	}
	ops := &admin.Ops{Store: s.store, Keys: s.keys, Bots: s.bots, Password: s.cfg.Password,
		Audit: func(kind, user, detail string) {
			s.store.Audit(store.AuditEvent{Time: time.Now().UTC(), Kind: kind, User: user, Addr: "admin-socket", Detail: detail})
		},
		Revoked: s.endSessions,
	}
	return &http.Server{Handler: admin.Handler(ops), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
}

// keysRecheck is how often a server reads the signing keys again without
// being told of a change; keysRetry is the first pause before a reload
// that failed is tried again (doubling up to keysRecheck).
const (
	keysRecheck = time.Minute
	keysRetry   = 250 * time.Millisecond
)

// followKeys reloads the signing keys whenever any node changes them, so
// that every node verifies the tokens every other signs, signs with the
// newest key, and stops verifying a retired one at once. A store of one
// process reports no change but its own. A reload that fails is tried
// again soon: the watch starts again as soon as a node's NATS connection
// is back, often before the store is ready to be read, and a change made
// while the node was away waited for the next recheck, a minute, with
// tokens of a new key refused meanwhile.
func (s *Server) followKeys(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	changed := make(chan struct{}, 1)
	go s.store.WatchSigningKeys(ctx, func() {
		select {
		case changed <- struct{}{}:
		default: // a reload is due already, and reads every change
		}
	})
	// A change whose watch event never came (a consumer lost in an
	// outage) is read within keysRecheck all the same.
	recheck := time.NewTicker(keysRecheck)
	defer recheck.Stop()
	var retry <-chan time.Time
	wait := keysRetry
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-recheck.C:
		case <-retry:
		}
		err := s.keys.Reload()
		if err == nil {
			retry, wait = nil, keysRetry
			continue
		}
		level := slog.LevelWarn
		if errors.Is(err, store.ErrUnavailable) {
			level = slog.LevelDebug // NATS's state is logged on its own; this is tried again
		}
		s.log.Log(ctx, level, "reloading the signing keys another node changed; trying again", slog.Any("err", err), slog.Duration("in", wait))
		retry = time.After(wait)
		wait = min(2*wait, keysRecheck)
	}
}

// holdBotNames holds the names of bot tokens minted by a version that did
// not (auth.Bots.HoldLiveNames), and of those whose account was deleted
// another way, so that nobody can register them.
func (s *Server) holdBotNames() {
	if n, err := s.bots.HoldLiveNames(); err != nil {
		s.log.Warn("holding the names of bot tokens", slog.Any("err", err))
	} else if n > 0 {
		s.log.Info("held the names of bot tokens minted before names were held", slog.Int("names", n))
	}
}

// purgeLoop holds the names of live bot tokens, then, once an hour, does
// so again, drops expired refresh families and bot tokens, and retires
// the signing keys whose tokens have all expired.
func (s *Server) purgeLoop(ctx context.Context) {
	s.holdBotNames()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case now := <-t.C:
			s.holdBotNames() // again, should the store not have answered at the start
			if n, err := s.store.PurgeExpired(now); err != nil {
				s.log.Warn("purging expired refresh tokens", slog.Any("err", err))
			} else if n > 0 {
				s.log.Debug("purged expired refresh tokens", slog.Int("families", n))
			}
			if n, err := s.store.PurgeExpiredBotTokens(now); err != nil {
				s.log.Warn("purging expired bot tokens", slog.Any("err", err))
			} else if n > 0 {
				s.log.Debug("purged expired bot tokens", slog.Int("tokens", n))
			}
			if _, err := s.keys.RetireDue(); err != nil {
				s.log.Warn("retiring rotated-out signing keys", slog.Any("err", err))
			}
		}
	}
}

// clusterDelivery is the hub's Delivery: the cluster's, or nil (one node).
func (s *Server) clusterDelivery() hub.Delivery {
	if s.cfg.Cluster == nil {
		return nil
	}
	return s.cfg.Cluster
}

// rawListener hands out its connections wrapped by rawsock: for TLS,
// whose record layer reads and writes the socket itself.
type rawListener struct{ net.Listener }

func (l rawListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return rawsock.Wrap(c), nil
}
