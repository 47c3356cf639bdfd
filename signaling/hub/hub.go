package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/proto"
)

// ErrClosed is returned by ServeConn once Shutdown has begun: the connection
// was told to reconnect and closed without being served.
var ErrClosed = errors.New("hub: shut down")

// closeGrace is how long the hub waits for a client's answer to its close
// frame before it drops the socket.
const closeGrace = 2 * time.Second

// Hub holds the sessions, rooms and presence of one signaling node and runs
// its WebSocket connections. Build it with New; stop it with Shutdown.
type Hub struct {
	cfg      Config
	log      *slog.Logger
	delivery Delivery
	sessions *shardedMap[*session] // by peer id
	tokens   *shardedMap[*session] // by sha256 of the resume token
	rooms    *shardedMap[*room]    // by name
	conns    *shardedMap[*conn]    // by connection key
	presence *presence
	stats    counters
	connSeq  atomic.Uint64

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
	h := &Hub{
		cfg:      cfg,
		log:      cfg.Logger,
		sessions: newShardedMap[*session](),
		tokens:   newShardedMap[*session](),
		rooms:    newShardedMap[*room](),
		conns:    newShardedMap[*conn](),
		quit:     make(chan struct{}),
		waitDone: make(chan struct{}),
	}
	h.delivery = localDelivery{h}
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

// ServeConn runs one upgraded, authenticated connection until it ends: it
// sends welcome first, then reads on the calling goroutine. It returns nil
// when the client or the hub closed the connection cleanly, and the read
// error otherwise. When it returns, nothing of the connection runs any more;
// its session lives on for the resume window.
func (h *Hub) ServeConn(ctx context.Context, ws *websocket.Conn, id Identity, opts ConnOptions) error {
	if !h.enter() {
		refuse(ws, h.cfg.WriteWait)
		return ErrClosed
	}
	defer h.wg.Done()
	stop := context.AfterFunc(ctx, func() { _ = ws.Close() })
	defer stop()
	c := h.open(ws, id, opts)
	return h.close(c, c.readLoop(false))
}

// Start serves a connection like ServeConn, but returns once welcome is
// queued, and reads on goroutines of the hub. The HTTP handler can then
// return, and net/http frees what it holds for the request: its goroutine,
// its buffers, the request and its contexts. With an Upgrader from
// NewUpgrader and Upgrade, the reader also hands its role to a fresh
// goroutine whenever the client goes idle, so that an idle connection
// holds a small stack and no buffer: about a third of ServeConn's memory
// per idle connection. The connection ends when the client leaves or at
// Shutdown. Start returns ErrClosed once Shutdown has begun.
func (h *Hub) Start(ws *websocket.Conn, id Identity, opts ConnOptions) error {
	if !h.enter() {
		refuse(ws, h.cfg.WriteWait)
		return ErrClosed
	}
	c := h.open(ws, id, opts)
	go c.serve()
	return nil
}

// serve runs the reader of a Start connection; it owns one count of h.wg.
// On an idle socket from Upgrade it first waits for data in a shallow call,
// so that its stack stays at the 2 KiB a goroutine starts with.
func (c *conn) serve() {
	defer c.h.wg.Done()
	var err error
	for c.sock != nil && c.sock.idle() && err == nil {
		if err = c.sock.fill(); err == nil && c.sock.skipPongs() {
			c.lastSeen.Store(time.Now().UnixNano())
		}
	}
	if err == nil {
		err = c.readLoop(true)
	}
	if errors.Is(err, errHandoff) {
		return // a fresh goroutine took over, with its own count
	}
	if err := c.h.close(c, err); err != nil {
		c.h.log.Debug("hub: connection ended", slog.Any("err", err))
	}
}

// open attaches a new connection: welcome is queued when it returns.
func (h *Hub) open(ws *websocket.Conn, id Identity, opts ConnOptions) *conn {
	c := h.newConn(ws, opts)
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

// close detaches a connection whose reader ended with readErr.
func (h *Hub) close(c *conn, readErr error) error {
	h.conns.deleteIf(c.key, func(v *conn) bool { return v == c })
	h.stats.conns.Add(-1)
	clean := h.detach(c, readErr)
	if clean || c.closeQueued() {
		return nil
	}
	return fmt.Errorf("hub: connection of peer %s: %w", c.s.member.Peer, readErr)
}

// refuse tells a connection that arrived during shutdown to reconnect.
func refuse(ws *websocket.Conn, wait time.Duration) {
	deadline := time.Now().Add(wait)
	_ = ws.SetWriteDeadline(deadline)
	if b, err := proto.New(proto.TypeReconnect, proto.Reconnect{After: 1000}).Encode(); err == nil {
		_ = ws.WriteMessage(websocket.TextMessage, b)
	}
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseServiceRestart, "server restart"), deadline)
	_ = ws.Close()
}

func (h *Hub) newConn(ws *websocket.Conn, opts ConnOptions) *conn {
	c := &conn{
		h:        h,
		ws:       ws,
		key:      strconv.FormatUint(h.connSeq.Add(1), 36),
		presence: opts.Presence,
	}
	c.sock, _ = ws.NetConn().(*sockConn)
	now := time.Now().UnixNano()
	c.lastSeen.Store(now)
	c.tokens, c.tokensAt = float64(h.cfg.MessageBurst), now
	c.abuse, c.abuseAt = float64(h.cfg.AbuseLimit), now
	// The hard limit lets the reader see a message somewhat over ReadLimit,
	// so it can answer too_large before closing with 1009; beyond it gorilla
	// closes with 1009 on its own without reading the payload.
	ws.SetReadLimit(2*h.cfg.ReadLimit + 4096)
	ws.SetPongHandler(func(string) error {
		c.lastSeen.Store(time.Now().UnixNano())
		return nil
	})
	return c
}

// sweep pings silent connections and drops dead ones. One goroutine for the
// whole hub instead of a timer per connection keeps idle connections cheap.
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
		now := time.Now().UnixNano()
		for _, c := range buf {
			idle := time.Duration(now - c.lastSeen.Load())
			switch {
			case idle > h.cfg.PongWait:
				h.log.Debug("hub: dropping silent connection", slog.String("peer", c.peer()))
				_ = c.ws.Close()
			case idle >= h.cfg.PingPeriod:
				c.ping()
			}
		}
		clear(buf)
	}
}

// Shutdown tells every client to reconnect (a reconnect message, then close
// code 1012), stops accepting connections and timers, and waits for every
// connection and goroutine of the hub to end. If ctx ends first, it drops
// the remaining sockets, waits for their goroutines and returns ctx.Err().
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
	for _, c := range h.conns.collect(nil) {
		_ = c.ws.Close()
	}
	<-h.waitDone
	return ctx.Err()
}

// restart queues a reconnect message and close code 1012.
func (c *conn) restart() {
	after := 250 + rand.IntN(1750) // spread the reconnect storm over ~2s
	b, _ := proto.New(proto.TypeReconnect, proto.Reconnect{After: after}).Encode()
	c.closeWith(b, websocket.CloseServiceRestart)
}
