package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/proto"
)

// maxPeers caps the peer connections one client keeps, whatever the server
// reports.
const maxPeers = 256

// Client errors.
var (
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("client closed")
	// ErrRevoked: the server ended the session because its credentials
	// were revoked (signed out, account disabled or deleted, role changed,
	// signing key retired). Disconnected.Err wraps it, with the server's
	// reason; the client reconnects only if its tokens still refresh.
	ErrRevoked = errors.New("session revoked by the server")
	// ErrUnknownPeer: no member of the room has that peer id.
	ErrUnknownPeer = errors.New("unknown peer")
	// ErrSignedOut: the client can no longer connect: the server refused
	// its access token, and its refresh token too (the sign-in was ended,
	// the account disabled or deleted), or it has none (a bot token that
	// was revoked or expired). SignedOut.Err and the rooms' RoomLost.Err
	// wrap it; sign in again with a new Client.
	ErrSignedOut = errors.New("signed out: the server no longer accepts this client's tokens")
)

// ServerError is an error message from the signaling server answering a
// request.
type ServerError struct {
	Code    proto.Code
	Message string
}

func (e *ServerError) Error() string { return fmt.Sprintf("server: %s: %s", e.Code, e.Message) }

// Errors that a ServerError matches with errors.Is, by its code.
var (
	// ErrRoomFull: the room holds as many people as it allows.
	ErrRoomFull = errors.New("room full")
	// ErrInviteRequired: the room's owner requires an invite (WithInvite).
	ErrInviteRequired = errors.New("room needs an invite")
	// ErrBadInvite: the invite is not the room's current one: a wrong
	// link, or the owner made a new one since.
	ErrBadInvite = errors.New("invite not valid for the room")
)

// Is makes errors.Is match a ServerError against the errors above.
func (e *ServerError) Is(target error) bool {
	switch target {
	case ErrRoomFull:
		return e.Code == proto.CodeRoomFull
	case ErrInviteRequired:
		return e.Code == proto.CodeInviteRequired
	case ErrBadInvite:
		return e.Code == proto.CodeBadInvite
	}
	return false
}

// Client is a signed-in khadga peer: one signaling connection, kept alive
// across drops, and one WebRTC peer connection per remote peer it shares a
// room with. Its methods are safe for concurrent use.
type Client struct {
	server string
	opts   *options
	log    *slog.Logger
	api    *webrtc.API
	// reports sends the RTCP sender reports of every peer connection,
	// by the publications' capture clocks (senderreport.go).
	reports *senderReports

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	out    chan *proto.Message
	events chan Event
	reqID  atomic.Uint64
	// refreshMu makes refreshes one at a time (refreshNow): two at once
	// would present the same refresh token, and the server takes the
	// second for reuse and signs the login out everywhere.
	refreshMu sync.Mutex

	mu     sync.Mutex
	tokens Tokens
	self   proto.Member
	resume string
	// resumeInProtocol: the welcome that gave resume said the server
	// reads it from Sec-WebSocket-Protocol (else it goes in the query).
	resumeInProtocol bool
	rtcCfg           webrtc.Configuration
	rooms            map[string]*Room
	peers            map[string]*peer
	pending          map[string]chan error
	online           map[string]proto.Member
	ws               *websocket.Conn
	after            time.Duration // server's reconnect hint
	closed           bool
	dropped          atomic.Int64
	// signedOut is set, for good, once the server refused the client's
	// tokens for good (signOut): requests then fail with it at once.
	signedOut atomic.Pointer[error]
	// closers counts the peer connections closing in the background
	// (closePeer), for Close to wait for; closersMu and closersDone keep
	// its Adds from racing that Wait.
	closers     sync.WaitGroup
	closersMu   sync.Mutex
	closersDone bool
}

// Dial signs in (with a password, or with the given tokens), opens the
// signaling connection and returns once the server has welcomed it. ctx
// bounds only the dial; the client lives until Close.
func Dial(ctx context.Context, serverURL string, cred Credentials, opts ...Option) (*Client, error) {
	o := defaultOptions()
	for _, f := range opts {
		f(o)
	}
	c := &Client{
		server: serverURL, opts: o, log: o.log,
		out:    make(chan *proto.Message, outQueue),
		events: make(chan Event, o.eventBuffer),
		rooms:  map[string]*Room{}, peers: map[string]*peer{},
		pending: map[string]chan error{}, online: map[string]proto.Member{},
	}
	c.reports = &senderReports{}
	api, err := newAPI(o, c.reports)
	if err != nil {
		return nil, err
	}
	c.api = api
	if err := c.signIn(ctx, cred); err != nil {
		return nil, err
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	ws, w, err := c.dialWS(ctx, "", false)
	if err != nil {
		c.cancel()
		return nil, err
	}
	c.welcome(w)
	c.mu.Lock()
	c.ws = ws // before Dial returns, so that DropConnection always finds it
	c.mu.Unlock()
	c.log.Info("connected", slog.String("peer", w.Peer), slog.String("user", w.User), slog.String("role", w.Role))
	c.wg.Add(2)
	go c.connLoop(ws)
	go c.refreshLoop()
	if o.netWatchEvery > 0 {
		c.wg.Add(1)
		go c.watchNetwork()
	}
	return c, nil
}

// ICE timeouts (see newAPI): pion's failed timeout is kept.
const (
	iceDisconnectedTimeout = 3 * time.Second
	iceFailedTimeout       = 25 * time.Second
	iceKeepalive           = time.Second
)

// How long ICE, on the side that nominates (the offerer), waits after its
// checks start before it accepts a working pair of each kind, in case a
// better one works too (newAPI). pion waits 500 ms for a server-reflexive
// pair, 1 s for a peer-reflexive one and 2 s for a relay. A direct pair
// through NATs is learned peer-reflexive, so every call between networks
// opened a second late; a host pair on a shared LAN answers within the
// first round of checks, well inside directAcceptanceWait, and wins on
// priority when both work. A relay still waits long enough for hole
// punching, which takes two or three rounds of checks (200 ms apart), so
// that a direct path is not given up for the operator's TURN server.
const (
	directAcceptanceWait = 250 * time.Millisecond
	relayAcceptanceWait  = time.Second
)

// sctpReceiveWindow is the SCTP receive buffer: what a peer may send us
// that we have not read yet. It caps the data in flight to us, so it must
// cover the bandwidth-delay product of a fast path: 2 MiB is 168 Mbit/s at
// 100 ms. It must not be much larger: behind the socket, pion queues
// incoming datagrams in two fixed 1 MB buffers (ICE agent, WebRTC mux),
// and a sender's burst into a larger window overflows them when this
// process decrypts slower than the burst arrives; a lost retransmission
// then costs pion's 1 s minimum RTO. On loopback 8 MiB gave 44 to 55 MB/s
// direct with those stalls, 2 MiB 49 to 58 (docs/benchmarks.md).
const sctpReceiveWindow = 2 << 20

func newAPI(o *options, sr *senderReports) (*webrtc.API, error) {
	se := webrtc.SettingEngine{}
	if o.se != nil {
		se = *o.se
	} else {
		// Notice a broken path in 3 s rather than pion's 5: with a
		// keepalive each second, ICE says disconnected after three
		// unanswered ones, and the restart follows (disconnectedGrace).
		// A caller's own SettingEngine keeps its timeouts.
		se.SetICETimeouts(iceDisconnectedTimeout, iceFailedTimeout, iceKeepalive)
		se.SetSrflxAcceptanceMinWait(directAcceptanceWait)
		se.SetPrflxAcceptanceMinWait(directAcceptanceWait)
		se.SetRelayAcceptanceMinWait(relayAcceptanceWait)
	}
	se.LoggerFactory = NewPionLoggerFactory(o.log)
	// A larger SCTP receive window lets file transfers fill the path
	// (pion's default is 1 MiB; see sctpReceiveWindow), and CRC32c is redundant under DTLS, which
	// authenticates every record (RFC 9653; used only if both sides agree).
	se.SetSCTPMaxReceiveBufferSize(sctpReceiveWindow)
	se.EnableSCTPZeroChecksum(true)
	// Recover quickly from a lost packet rather than backing off for up to
	// a minute (pion's default RTO ceiling).
	se.SetSCTPRTOMax(time.Second)
	// UDP sockets with room for a burst of datagrams (see udpReadBuffer):
	// with the kernel's default, loopback transfers lost packets to
	// receive-buffer overflow and stalled for a retransmission timeout.
	if netUnset(&se) {
		sn, err := newSocketNet()
		if err != nil {
			return nil, err
		}
		se.SetNet(sn)
	}
	if o.relayOnly {
		// ICE waits (2 s by default) before accepting a relay pair in case
		// a direct one turns up; with relays only, none can.
		se.SetRelayAcceptanceMinWait(0)
	}
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m, o.videoCodecs); err != nil {
		return nil, fmt.Errorf("register codecs: %w", err)
	}
	reg := &interceptor.Registry{}
	if err := registerInterceptors(m, reg, sr); err != nil {
		return nil, fmt.Errorf("register interceptors: %w", err)
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg)), nil
}

func (c *Client) signIn(ctx context.Context, cred Credentials) error {
	var t Tokens
	switch {
	case cred.Password != "":
		var err error
		if t, err = Login(ctx, c.opts.hc, c.server, cred.Username, cred.Password, cred.Code); err != nil {
			return fmt.Errorf("log in: %w", err)
		}
	case cred.AccessToken != "":
		t = Tokens{Access: cred.AccessToken, Refresh: cred.RefreshToken, Expiry: jwtExpiry(cred.AccessToken)}
		if !t.Expiry.IsZero() && time.Until(t.Expiry) < 30*time.Second && t.Refresh != "" {
			var err error
			if t, err = c.rotate(ctx, t); err != nil {
				return fmt.Errorf("refresh token: %w", err)
			}
		}
	case cred.RefreshToken != "":
		var err error
		if t, err = c.rotate(ctx, Tokens{Refresh: cred.RefreshToken}); err != nil {
			return fmt.Errorf("refresh token: %w", err)
		}
	default:
		return errors.New("credentials: need a password, an access token or a refresh token")
	}
	c.setTokens(t)
	return nil
}

func (c *Client) setTokens(t Tokens) {
	c.mu.Lock()
	changed := t != c.tokens
	c.tokens = t
	c.mu.Unlock()
	if changed && c.opts.onTokens != nil {
		c.opts.onTokens(t)
	}
}

// Tokens returns the current tokens.
func (c *Client) Tokens() Tokens {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tokens
}

// Self is this session: peer id, user and role.
func (c *Client) Self() proto.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.self
}

// Events delivers client events: *Presence, *Disconnected, *SignedOut,
// *Reconnected, *NetworkChanged.
// It is closed by Close.
func (c *Client) Events() <-chan Event { return c.events }

// Online lists who is online, as last reported by the server.
func (c *Client) Online() []proto.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	ms := make([]proto.Member, 0, len(c.online))
	for _, m := range c.online {
		ms = append(ms, m)
	}
	return ms
}

// welcome applies a welcome's session and ICE servers.
func (c *Client) welcome(w proto.Welcome) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.self = proto.Member{Peer: w.Peer, User: w.User, Role: w.Role}
	c.resume, c.resumeInProtocol = w.ResumeToken, w.ProtocolCredentials
	c.rtcCfg = webrtc.Configuration{ICEServers: iceServers(w.ICEServers)}
	if c.opts.relayOnly {
		c.rtcCfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
}

func iceServers(in []proto.ICEServer) []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(in))
	for _, s := range in {
		out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}

// connLoop serves the connection and reconnects after each drop until Close.
func (c *Client) connLoop(ws *websocket.Conn) {
	defer c.wg.Done()
	for {
		err := c.serve(ws)
		if c.ctx.Err() != nil {
			return
		}
		if ce := (*websocket.CloseError)(nil); errors.As(err, &ce) && ce.Code == proto.CloseRevoked {
			err = fmt.Errorf("%w: %s", ErrRevoked, ce.Text)
		}
		c.log.Warn("signaling connection lost", slog.Any("err", err))
		c.emitClient(&Disconnected{Err: err})
		if ws = c.reconnect(); ws == nil {
			return
		}
	}
}

// reconnect dials again with backoff and jitter, resuming the session. It
// returns nil when the client is closed, or signed out (signOut): then
// dialling again can never succeed.
func (c *Client) reconnect() *websocket.Conn {
	refused := 0 // dials refused 401 in a row
	for n := 0; ; n++ {
		c.mu.Lock()
		wait, resume, inProtocol := c.backoff(n), c.resume, c.resumeInProtocol
		if c.after > 0 {
			wait, c.after = c.after, 0
		}
		c.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		c.ensureFreshToken()
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.dialTimeout)
		ws, w, err := c.dialWS(ctx, resume, inProtocol)
		cancel()
		if err != nil {
			c.log.Info("reconnect failed", slog.Int("attempt", n+1), slog.Any("err", err))
			if !errors.Is(err, ErrUnauthorized) {
				refused = 0
				continue
			}
			refused++
			if out := c.forceRefresh(err, refused); out != nil {
				c.signOut(out)
				return nil
			}
			continue
		}
		c.mu.Lock()
		c.ws = ws
		c.mu.Unlock()
		c.afterReconnect(w)
		return ws
	}
}

// signOut ends a client that the server will let in no more: SignedOut,
// then every room is lost (RoomLost, then its Events close, and its peer
// connections close), and requests fail with err from now on.
func (c *Client) signOut(err error) {
	c.log.Error("signed out: the server refused this client's tokens; sign in again", slog.Any("err", err))
	c.signedOut.Store(&err)
	c.emitClient(&SignedOut{Err: err})
	c.mu.Lock()
	rooms := make([]*Room, 0, len(c.rooms))
	for _, r := range c.rooms {
		rooms = append(rooms, r)
	}
	c.mu.Unlock()
	for _, r := range rooms {
		c.roomLost(r, err)
	}
}

// afterReconnect handles the welcome of a new connection. A resumed session
// keeps its peer connections and only takes the fresh ICE servers. A new
// session has a new peer id, so every peer connection is rebuilt: the
// client forgets its members, joins its rooms again, and negotiates anew
// with the members the server lists.
func (c *Client) afterReconnect(w proto.Welcome) {
	c.mu.Lock()
	oldSelf := c.self.Peer
	c.mu.Unlock()
	c.welcome(w)
	resumed := w.Resumed && w.Peer == oldSelf
	c.log.Info("reconnected", slog.Bool("resumed", resumed), slog.String("peer", w.Peer))
	if resumed {
		c.mu.Lock()
		cfg := c.rtcCfg
		for _, p := range c.peers {
			p.updateICEServers(cfg)
		}
		c.mu.Unlock()
		c.emitClient(&Reconnected{Resumed: true, Peer: w.Peer})
		return
	}
	c.mu.Lock()
	peers := c.peers
	c.peers = map[string]*peer{}
	rooms := make([]*Room, 0, len(c.rooms))
	for _, r := range c.rooms {
		rooms = append(rooms, r)
	}
	c.mu.Unlock()
	for _, p := range peers {
		m := p.Member()
		for _, name := range p.Rooms() {
			c.mu.Lock()
			if r := c.rooms[name]; r != nil {
				r.removeMember(m)
			}
			c.mu.Unlock()
		}
		c.closePeer(p)
	}
	c.emitClient(&Reconnected{Resumed: false, Peer: w.Peer})
	for _, r := range rooms {
		// Safe to Add here: connLoop, which runs this, holds the group open.
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.rejoin(r)
		}()
	}
}

// rejoin joins r again after a reconnect that lost the session. A refusal
// that asking again will not change (the room now wants an invite, or is
// full) ends the room: RoomLost, then its Events close, so that an app
// does not sit in a room it is no longer in. Anything else (a timeout,
// the socket dropping again, rate_limited) is tried again after a pause
// that grows to rejoinMaxPause, until it takes, the room is left, or the
// client closes. A join of a room the session is in already is answered
// as a join, so a retry after a lost answer does no harm.
func (c *Client) rejoin(r *Room) {
	pause := rejoinFirstPause
	for {
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.joinTimeout)
		err := c.request(ctx, r.joinMsg())
		cancel()
		if err == nil || c.ctx.Err() != nil || !c.holds(r) {
			return
		}
		if se := (*ServerError)(nil); errors.As(err, &se) && se.Code != proto.CodeRateLimited && se.Code != proto.CodeInternal {
			c.log.Warn("rejoin refused; the room is lost", slog.String("room", r.name), slog.Any("err", err))
			c.roomLost(r, err)
			return
		}
		c.log.Warn("rejoin failed; trying again", slog.String("room", r.name), slog.Any("err", err), slog.Duration("in", pause))
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, rejoinMaxPause)
	}
}

// Pauses between attempts to rejoin a room (rejoin).
const (
	rejoinFirstPause = time.Second
	rejoinMaxPause   = 30 * time.Second
)

// holds reports whether r is still one of the client's rooms.
func (c *Client) holds(r *Room) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rooms[r.name] == r
}

// roomLost ends r, which the server will not let the client back into,
// once: RoomLost, then its Events close.
func (c *Client) roomLost(r *Room, err error) {
	if !c.holds(r) || !r.lost.CompareAndSwap(false, true) {
		return
	}
	r.emit(&RoomLost{Room: r.name, Err: err})
	c.forgetRoom(r)
}

// request sends m with a fresh id and waits for its joined/ack or error.
func (c *Client) request(ctx context.Context, m *proto.Message) error {
	id := "r" + strconv.FormatUint(c.reqID.Add(1), 10)
	m.ID = id
	ch := make(chan error, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	if err := c.send(m); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%s %s: %w", m.Type, m.Room, ctx.Err())
	case <-c.ctx.Done():
		return ErrClosed
	}
}

func (c *Client) resolve(ref string, err error) {
	c.mu.Lock()
	ch := c.pending[ref]
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- err:
		default:
		}
	}
}

// Close leaves the signaling server, closes every peer connection and the
// event channels, and waits for the client's goroutines.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	open := slices.Collect(maps.Values(c.peers))
	c.mu.Unlock()
	// Before the signaling socket goes: the others close their side of
	// a peer connection when the server tells them this client left.
	flushChats(open)
	c.cancel()
	c.wg.Wait()
	c.mu.Lock()
	peers, rooms := c.peers, c.rooms
	c.peers, c.rooms = map[string]*peer{}, map[string]*Room{}
	c.mu.Unlock()
	for _, r := range rooms {
		r.closePublications() // their pumps are the client's goroutines too
	}
	for _, p := range peers {
		c.closePeer(p)
	}
	c.closersMu.Lock()
	c.closersDone = true
	c.closersMu.Unlock()
	c.closers.Wait()
	for _, r := range rooms {
		r.closeEvents()
	}
	c.mu.Lock()
	close(c.events)
	c.mu.Unlock()
	return nil
}

// closePeer closes p in the background (pion's Close waits for the
// connection's goroutines, and callers may hold c.mu); Close waits for
// it, so that no peer connection outlives the client. One that a Leave
// racing Close gives up after Close has waited is closed all the same.
func (c *Client) closePeer(p *peer) {
	c.closersMu.Lock()
	defer c.closersMu.Unlock()
	if c.closersDone {
		go p.close()
		return
	}
	c.closers.Add(1)
	go func() { defer c.closers.Done(); p.close() }()
}

// DropConnection closes the signaling WebSocket under the client, as a
// network failure would. The client reconnects and resumes. It exists for
// tests and for diagnosing reconnection.
func (c *Client) DropConnection() {
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	if ws != nil {
		ws.Close()
	}
}

func (c *Client) emitClient(ev Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	select {
	case c.events <- ev:
	default:
		c.dropped.Add(1)
		c.log.Warn("client event dropped: consumer too slow")
	}
}
