package turn

import (
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// bandwidth caps what one user relays on this server, each direction
// apart, over all the user's allocations (Config.UserBandwidth): without
// it, anyone with credentials could have the server relay as much as its
// uplink carries. A datagram over the cap is dropped, as a congested link
// would drop it, and WebRTC's congestion control slows down.
//
// pion does not tell the relay generator whose allocation a socket is for;
// OnAllocationCreated names the user and the relay port a moment later. So
// a socket is registered by its port when it is allocated, and takes its
// user's budget when the event names it.
type bandwidth struct {
	limit rate.Limit // bytes per second
	burst int        // bytes

	mu    sync.Mutex
	conns map[uint16]*relayConn // open relay sockets, by port
	users map[string]*budget    // users with at least one socket
}

// budget is one user's allowance, shared by the user's relay sockets.
type budget struct {
	toPeer, fromPeer *rate.Limiter
	sockets          int
}

// maxDatagram is the largest UDP payload: the burst is at least that, so
// that any datagram can pass when the budget is full.
const maxDatagram = 65535

// newBandwidth returns a cap of bytesPerSecond per user and direction, or
// nil (no cap) if bytesPerSecond is not positive. A user may send up to one
// second's worth at once.
func newBandwidth(bytesPerSecond int) *bandwidth {
	if bytesPerSecond <= 0 {
		return nil
	}
	return &bandwidth{
		limit: rate.Limit(bytesPerSecond),
		burst: max(bytesPerSecond, maxDatagram),
		conns: make(map[uint16]*relayConn),
		users: make(map[string]*budget),
	}
}

// opened registers a relay socket until its allocation names its user.
func (b *bandwidth) opened(c *relayConn) {
	if b == nil || c.port == 0 {
		return
	}
	b.mu.Lock()
	b.conns[c.port] = c
	b.mu.Unlock()
}

// assign gives the socket at relay's port the budget of user.
func (b *bandwidth) assign(relay net.Addr, user string) {
	ua, ok := relay.(*net.UDPAddr)
	if b == nil || !ok {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.conns[uint16(ua.Port)]
	if c == nil || c.budget.Load() != nil {
		return
	}
	bg := b.users[user]
	if bg == nil {
		bg = &budget{toPeer: rate.NewLimiter(b.limit, b.burst), fromPeer: rate.NewLimiter(b.limit, b.burst)}
		b.users[user] = bg
	}
	bg.sockets++
	c.budget.Store(bg)
	c.user = user
}

// closed forgets a relay socket, and its user once it has no other.
func (b *bandwidth) closed(c *relayConn) {
	if b == nil || c.port == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conns[c.port] == c {
		delete(b.conns, c.port)
	}
	bg := c.budget.Load()
	if bg == nil {
		return
	}
	c.budget.Store(nil)
	if bg.sockets--; bg.sockets == 0 && b.users[c.user] == bg {
		delete(b.users, c.user)
	}
}

// allow reports whether n more bytes fit in l now; a nil l has no cap.
func allow(l *rate.Limiter, n int) bool {
	return l == nil || l.AllowN(time.Now(), n)
}
