package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/khadga/khadga/internal/loglimit"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/wsconn"
)

// Errors of Accept.
var (
	// ErrClosed means Shutdown has begun: the connection was told to
	// reconnect and closed without being served.
	ErrClosed = errors.New("hub: shut down")
	// ErrTooManyConnections means the user already has
	// Config.MaxConnsPerUser connections (on every node of a cluster
	// together), or, in a cluster, as many sessions and none of those
	// that waited for a resume could be ended; the connection was closed
	// with proto.CloseTooManyConnections and a reason saying so.
	ErrTooManyConnections = errors.New("hub: too many connections for this user")
)

// Hub holds the sessions, rooms and presence of one signaling node and runs
// its WebSocket connections. Build it with New; stop it with Shutdown.
type Hub struct {
	cfg   Config
	wscfg *wsconn.Config
	log   *slog.Logger
	// closes budgets the lines of connections the server closes for
	// what their clients did (closes.go).
	closes   *loglimit.Logger
	delivery Delivery
	// clustered says Config.Delivery is another node's (not
	// LocalDelivery): sessions elsewhere count against
	// Config.MaxConnsPerUser, and a session says when it waits.
	clustered bool
	sessions  *shardedMap[*session] // by peer id
	tokens    *shardedMap[*session] // by sha256 of the resume token
	rooms     *shardedMap[*room]    // by name
	conns     *shardedMap[*conn]    // by connection key
	users     *userCounts
	presence  *presence
	revoked   revocations // recent ones, for connections that attach after them
	stats     counters
	connSeq   atomic.Uint64
	claimSeq  atomic.Uint64 // numbers claims, for session.ordered
	// testHookRelayLoaded, if set, runs in relay right after it loads
	// session.ordered (tests: a claim between the load and the delivery).
	testHookRelayLoaded atomic.Pointer[func()]
	// testHookRevokeMatched, if set, runs in Revoke and MoveLogin between
	// finding a session local and matching and acting on it (tests: a
	// claim from another node takes the session in between).
	testHookRevokeMatched atomic.Pointer[func()]
	// testHookAddingMember, if set, runs in addMemberLocked just before
	// the join changes the room's membership (tests: another session's
	// join comes in between).
	testHookAddingMember atomic.Pointer[func(room, peer string)]

	// mu guards stopping and every wg.Add, so that Shutdown's wg.Wait never
	// races an Add.
	mu       sync.Mutex
	stopping bool
	stopped  atomic.Bool // mirrors stopping for lock-free reads
	wg       sync.WaitGroup
	quit     chan struct{}
	waitOnce sync.Once
	waitDone chan struct{}
}

// New builds a hub and starts its keepalive sweeper. Call Shutdown to stop it.
func New(cfg Config) (*Hub, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	wscfg := wsconn.Config{
		ReadLimit:  cfg.ReadLimit,
		WriteWait:  cfg.WriteWait,
		QueueLen:   cfg.SendQueue,
		QueueBytes: cfg.SendQueueBytes,
	}.WithDefaults()
	h := &Hub{
		cfg:      cfg,
		wscfg:    &wscfg,
		log:      cfg.Logger,
		closes:   loglimit.New(cfg.Logger, closeLogBurst, closeLogEvery),
		sessions: newShardedMap[*session](),
		tokens:   newShardedMap[*session](),
		rooms:    newShardedMap[*room](),
		conns:    newShardedMap[*conn](),
		users:    newUserCounts(),
		quit:     make(chan struct{}),
		waitDone: make(chan struct{}),
	}
	h.delivery, h.clustered = cfg.Delivery, cfg.Delivery != nil
	if h.delivery == nil {
		h.delivery = LocalDelivery()
	}
	h.presence = newPresence(h)
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(collector{h}); err != nil {
			return nil, fmt.Errorf("hub: register metrics: %w", err)
		}
	}
	h.enter()
	go h.sweep()
	return h, nil
}

// enter counts a goroutine or callback in h.wg, unless the hub is stopping.
// Its caller must call h.wg.Done when it returns true.
func (h *Hub) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopping {
		return false
	}
	h.wg.Add(1)
	return true
}

// Accept serves an upgraded, authenticated WebSocket connection, plain or
// TLS: it queues welcome, starts the connection's reader on a goroutine of
// the hub, and returns. The caller (an HTTP handler) can then return, which
// frees what net/http held for the request. The connection ends when the
// client leaves or at Shutdown. Accept returns ErrClosed once Shutdown has
// begun, and ErrTooManyConnections when the user is at its limit; in both
// cases the connection was closed with a reason.
func (h *Hub) Accept(nc net.Conn, id Identity, opts ConnOptions) error {
	if !h.enter() {
		refuse(nc, h.wscfg, proto.New(proto.TypeReconnect, proto.Reconnect{After: 1000}), 1012, "server restart")
		return ErrClosed
	}
	limit := h.cfg.MaxConnsPerUser
	if h.takesOverHere(id.User, opts.ResumeToken) {
		limit++ // the old connection ends as this one resumes
	}
	// The user's connections on the other nodes count too
	// (clusterlimit.go).
	far := h.farSessions(id.User, opts.ResumeToken)
	limit -= far.Open
	if far.TakesOver {
		limit++
	}
	ok := h.users.add(id.User, limit)
	if ok && h.clustered && !h.makeRoom(id.User, opts.ResumeToken, far) {
		h.users.remove(id.User)
		ok = false
	}
	if !ok {
		h.wg.Done()
		h.stats.countError(proto.CodeRateLimited)
		text := fmt.Sprintf("user %s already has %d connections", id.User, h.cfg.MaxConnsPerUser)
		refuse(nc, h.wscfg, proto.NewError("", proto.CodeRateLimited, "%s", text), proto.CloseTooManyConnections, "too many connections")
		return ErrTooManyConnections
	}
	c := h.open(nc, id, opts)
	c.ws.Start(c, c.ended)
	return nil
}

// ended runs on the connection's reader once the connection has ended.
// The reader owns one count of h.wg, from Accept until here.
func (c *conn) ended(res wsconn.Result[queued]) {
	defer c.h.wg.Done()
	c.h.close(c, res)
}

// open attaches a new connection: welcome is queued when it returns.
func (h *Hub) open(nc net.Conn, id Identity, opts ConnOptions) *conn {
	c := &conn{
		h:        h,
		key:      strconv.FormatUint(h.connSeq.Add(1), 36),
		user:     id.User,
		presence: opts.Presence,
	}
	c.ws = wsconn.New[queued](nc, h.wscfg)
	now := time.Now().UnixNano()
	c.tokens, c.tokensAt = float64(h.cfg.MessageBurst), now
	c.bytes, c.bytesAt = float64(h.cfg.SignalBurstBytes), now
	c.rooms, c.roomsAt = h.roomChangeBurst(), now
	c.abuse, c.abuseAt = float64(h.cfg.AbuseLimit), now
	h.stats.conns.Add(1)
	h.attach(c, id, opts)
	h.conns.putIfAbsent(c.key, c) // after attach: the sweeper reads c.s
	if h.stopped.Load() {
		// Shutdown began after enter and may have missed c: restart is
		// idempotent, so telling it twice is harmless.
		c.restart()
	}
	return c
}

// close detaches a connection whose reader ended.
func (h *Hub) close(c *conn, res wsconn.Result[queued]) {
	h.conns.deleteIf(c.key, func(v *conn) bool { return v == c })
	h.stats.conns.Add(-1)
	h.users.remove(c.user)
	if errors.Is(res.Err, wsconn.ErrSlowConsumer) {
		h.stats.slow.Add(1)
		h.closes.Log(slog.LevelInfo, "hub: dropped a slow consumer", c.whose(), slog.Any("err", res.Err))
	}
	h.detach(c, res)
	if res.Err != nil && res.ServerCode == 0 {
		h.log.Debug("hub: connection ended", slog.String("peer", c.peer()), slog.Any("err", res.Err))
	}
}

// refuse tells a connection the hub will not serve why, and closes it. It
// runs on the accepting goroutine, with every write bounded by WriteWait.
func refuse(nc net.Conn, cfg *wsconn.Config, m *proto.Message, code int, reason string) {
	ws := wsconn.New[queued](nc, cfg)
	if b, err := m.Encode(); err == nil {
		_ = ws.Send(queued{Envelope: Envelope{Msg: b, Kind: KindEvent}})
	}
	ws.Close(code, reason)
	ws.Serve(refusedHandler{})
}

// refusedHandler ignores what a refused client sends while its close is on
// the way.
type refusedHandler struct{}

func (refusedHandler) Message(bool, []byte) {}
func (refusedHandler) TooLarge(int64)       {}

// sweep pings silent connections and drops dead ones. One goroutine for the
// whole hub instead of a timer per connection keeps idle connections cheap.
// It never blocks: Ping and Kill only queue and wake.
func (h *Hub) sweep() {
	defer h.wg.Done()
	every := h.cfg.PingPeriod / 4
	if d := (h.cfg.PongWait - h.cfg.PingPeriod) / 2; d < every {
		every = d
	}
	every = max(every, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	var buf []*conn
	for {
		select {
		case <-h.quit:
			return
		case <-t.C:
		}
		buf = h.conns.collect(buf[:0])
		now := time.Now()
		for _, c := range buf {
			idle := now.Sub(c.ws.LastSeen())
			switch {
			case idle > h.cfg.PongWait:
				c.ws.Kill(fmt.Errorf("hub: no frame for %v", idle.Round(time.Millisecond)))
			case idle >= h.cfg.PingPeriod:
				c.ws.Ping()
			}
		}
		clear(buf)
	}
}

// Shutdown tells every client to reconnect (a reconnect message, then close
// code 1012), stops accepting connections and timers, and waits for every
// connection and goroutine of the hub to end. If ctx ends first, it drops
// the remaining connections, waits for their goroutines (which a drop wakes
// at once) and returns an error that wraps ctx.Err().
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	first := !h.stopping
	h.stopping = true
	h.stopped.Store(true)
	h.mu.Unlock()
	if first {
		close(h.quit)
		h.presence.stop()
		for _, s := range h.sessions.collect(nil) {
			s.mu.Lock()
			if s.timer != nil {
				s.timer.Stop()
			}
			s.mu.Unlock()
		}
		for _, c := range h.conns.collect(nil) {
			c.restart()
		}
	}
	h.waitOnce.Do(func() {
		go func() { h.wg.Wait(); close(h.waitDone) }()
	})
	select {
	case <-h.waitDone:
		return nil
	case <-ctx.Done():
	}
	left := h.conns.collect(nil)
	for _, c := range left {
		c.ws.Kill(errors.New("hub: shutdown deadline"))
	}
	<-h.waitDone
	return fmt.Errorf("hub: %d connections were still open at the shutdown deadline and were dropped: %w", len(left), ctx.Err())
}

// restart queues a reconnect message and close code 1012.
func (c *conn) restart() {
	after := 250 + rand.IntN(1750) // spread the reconnect storm over ~2s
	c.closeWith(proto.New(proto.TypeReconnect, proto.Reconnect{After: after}), 1012, "server restart")
}

// closeWith queues m, then closes the connection with code and reason.
func (c *conn) closeWith(m *proto.Message, code int, reason string) {
	if b, err := m.Encode(); err == nil {
		_ = c.ws.Send(queued{Envelope: Envelope{Msg: b, Kind: KindEvent}})
	}
	c.ws.Close(code, reason)
}
