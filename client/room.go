package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/khadga/khadga/proto"
)

// ErrNotInRoom: the client is not (or no longer) in the room.
var ErrNotInRoom = errors.New("not in room")

// Room is a joined room. Its Events channel reports what happens in it, in
// order, and is closed when the room is left or the client is closed.
type Room struct {
	c      *Client
	name   string
	invite string // sent again when a new session rejoins

	events  chan Event
	dropped atomic.Int64
	done    chan struct{}  // closed when the room closes, before events
	waiting sync.WaitGroup // emitters waiting for room in events
	lost    atomic.Bool    // the server refused a rejoin (Client.roomLost)

	mu      sync.Mutex
	members map[string]proto.Member
	pubs    []*Publication
	closed  bool
}

// JoinOption changes one Join.
type JoinOption func(*Room)

// WithInvite joins with the invite token of a room whose owner requires
// one: the token of an invite link (its invite= part). The client keeps
// it, to join again after a reconnection that starts a new session. A
// room that needs no invite ignores it.
func WithInvite(token string) JoinOption { return func(r *Room) { r.invite = token } }

// Join enters a room. The returned Room's Events start with a
// MemberJoined for each member already there; the client connects to each
// of them peer to peer (PeerConnected when the chat channel opens). A room
// whose owner requires an invite refuses a join without the right one with
// ErrInviteRequired or ErrBadInvite (see WithInvite); a full one with
// ErrRoomFull.
func (c *Client) Join(ctx context.Context, room string, opts ...JoinOption) (*Room, error) {
	if err := proto.ValidRoom(room); err != nil {
		return nil, fmt.Errorf("join %q: %w", room, err)
	}
	r := &Room{c: c, name: room, events: make(chan Event, c.opts.eventBuffer), done: make(chan struct{}), members: map[string]proto.Member{}}
	for _, o := range opts {
		o(r)
	}
	if r.invite != "" {
		if err := proto.ValidInvite(r.invite); err != nil {
			return nil, fmt.Errorf("join %q: %w", room, err)
		}
	}
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return nil, ErrClosed
	case c.rooms[room] != nil:
		c.mu.Unlock()
		return nil, fmt.Errorf("join %q: already joined", room)
	}
	c.rooms[room] = r
	c.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.joinTimeout)
		defer cancel()
	}
	if err := c.request(ctx, r.joinMsg()); err != nil {
		c.forgetRoom(r)
		return nil, fmt.Errorf("join %q: %w", room, err)
	}
	c.log.Info("joined room", slog.String("room", room), slog.Int("members", len(r.Members())))
	return r, nil
}

// joinMsg is the join request for r, with its invite if it has one.
func (r *Room) joinMsg() *proto.Message {
	if r.invite == "" {
		return &proto.Message{Type: proto.TypeJoin, Room: r.name}
	}
	m := proto.New(proto.TypeJoin, proto.Join{Invite: r.invite})
	m.Room = r.name
	return m
}

// Name is the room's name.
func (r *Room) Name() string { return r.name }

// Events delivers the room's events; see Event for the types. A consumer
// that falls behind by the buffer (WithEventBuffer) loses events (Dropped
// counts them), except RecordingConsent, which waits for it: the peer
// that sent it waits meanwhile.
func (r *Room) Events() <-chan Event { return r.events }

// Dropped counts events lost because the consumer fell behind.
func (r *Room) Dropped() int64 { return r.dropped.Load() }

// Members lists the other members of the room, sorted by user then peer id.
func (r *Room) Members() []proto.Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	ms := make([]proto.Member, 0, len(r.members))
	for _, m := range r.members {
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool {
		if ms[i].User != ms[j].User {
			return ms[i].User < ms[j].User
		}
		return ms[i].Peer < ms[j].Peer
	})
	return ms
}

// MembersByUser lists the members signed in as user.
func (r *Room) MembersByUser(user string) []proto.Member {
	var out []proto.Member
	for _, m := range r.Members() {
		if m.User == user {
			out = append(out, m)
		}
	}
	return out
}

// PeerInfo reports the connection to a member.
func (r *Room) PeerInfo(peerID string) (ConnInfo, bool) {
	p, err := r.peer(peerID)
	if err != nil {
		return ConnInfo{}, false
	}
	return p.Info(), true
}

// Send sends a chat message to every member whose peer connection is open
// and returns how many it went to. Members still connecting miss it.
func (r *Room) Send(text string) (int, error) {
	if len(text) > MaxMessageText {
		return 0, fmt.Errorf("message is %d bytes, limit %d", len(text), MaxMessageText)
	}
	var n int
	var errs []error
	for _, m := range r.Members() {
		p, err := r.peer(m.Peer)
		if err != nil {
			continue
		}
		if err := p.sendChat(r.name, text); err != nil {
			if !errors.Is(err, ErrNotConnected) {
				errs = append(errs, err)
			}
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// SendFile offers a file of size bytes, read from rd, to one member. It
// returns once the transfer has started; the Transfer reports progress, and
// its Err is nil only when the receiver verified size and SHA-256. ctx
// bounds the whole transfer: when it ends first, the receiver is told
// why, and the Transfer ends once the receiver has read that (at most
// 5 s later), so the caller may close the Client as soon as it ends.
func (r *Room) SendFile(ctx context.Context, peerID, name string, rd io.Reader, size int64) (*Transfer, error) {
	p, err := r.peer(peerID)
	if err != nil {
		return nil, err
	}
	return p.sendFile(ctx, r.name, name, rd, size)
}

// Leave leaves the room and closes its event channel. Peer connections to
// members with whom no other room is shared are closed.
func (r *Room) Leave(ctx context.Context) error {
	c := r.c
	c.mu.Lock()
	if c.rooms[r.name] != r {
		c.mu.Unlock()
		return ErrNotInRoom
	}
	c.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.joinTimeout)
		defer cancel()
	}
	err := c.request(ctx, &proto.Message{Type: proto.TypeLeave, Room: r.name})
	c.forgetRoom(r)
	if err != nil {
		return fmt.Errorf("leave %q: %w", r.name, err)
	}
	return nil
}

// forgetRoom drops the room and the peers only it held.
func (c *Client) forgetRoom(r *Room) {
	r.closePublications()
	c.mu.Lock()
	if c.rooms[r.name] == r {
		delete(c.rooms, r.name)
	}
	var gone []*peer
	for id, p := range c.peers {
		if p.inRoom(r.name) && p.removeRoom(r.name) == 0 {
			delete(c.peers, id)
			gone = append(gone, p)
		}
	}
	c.mu.Unlock()
	for _, p := range gone {
		c.closePeer(p)
	}
	r.closeEvents()
}

func (r *Room) peer(peerID string) (*peer, error) {
	r.c.mu.Lock()
	p := r.c.peers[peerID]
	r.c.mu.Unlock()
	if p == nil || !p.inRoom(r.name) {
		return nil, fmt.Errorf("room %s: peer %q: %w", r.name, peerID, ErrUnknownPeer)
	}
	return p, nil
}

// addMember records m and reports whether it is new.
func (r *Room) addMember(m proto.Member) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, had := r.members[m.Peer]
	r.members[m.Peer] = m
	return !had
}

func (r *Room) removeMember(m proto.Member) {
	r.mu.Lock()
	old, had := r.members[m.Peer]
	delete(r.members, m.Peer)
	r.mu.Unlock()
	if had {
		r.emit(&MemberLeft{Room: r.name, Member: old})
	}
}

// emit delivers ev without blocking; it reports false if ev was dropped.
// A RecordingConsent is never dropped: it waits for room (emitWaiting).
func (r *Room) emit(ev Event) bool {
	if _, ok := ev.(*RecordingConsent); ok {
		return r.emitWaiting(ev)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	select {
	case r.events <- ev:
		return true
	default:
		r.dropped.Add(1)
		r.c.log.Warn("room event dropped: consumer too slow", slog.String("room", r.name), slog.String("event", fmt.Sprintf("%T", ev)))
		return false
	}
}

// emitWaiting delivers ev, waiting while the consumer is behind, until the
// room closes. It is for what a consumer must not miss: a recorder that
// lost a withdrawal of consent (to a flood of chat ahead of it) would
// record someone who said no. The wait holds up only the goroutine that
// emits, the sending peer's chat channel: that peer's own messages wait
// behind it.
func (r *Room) emitWaiting(ev Event) bool {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	r.waiting.Add(1)
	r.mu.Unlock()
	defer r.waiting.Done()
	select {
	case r.events <- ev:
		return true
	case <-r.done:
		return false
	}
}

// closePublications closes the room's publications and waits for their
// pumps, which end once their source's NextSample honours its context.
func (r *Room) closePublications() {
	for _, pub := range r.publications() {
		_ = pub.Close()
	}
}

func (r *Room) closeEvents() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	close(r.done)
	r.mu.Unlock()
	r.waiting.Wait() // every waiting emitter sees done and leaves
	close(r.events)
}
