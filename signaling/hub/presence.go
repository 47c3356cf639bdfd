package hub

import (
	"sync"
	"time"

	"github.com/khadga/khadga/proto"
)

// presence keeps who is online, once for the whole hub, and feeds the
// connections that asked for it: a full list when they subscribe, then the
// changes coalesced over Config.PresenceInterval. The encoded full list is
// shared by every subscriber until the next change.
//
// A change costs O(subscribers) per interval, not per change: coalescing is
// what keeps 10,000 connections coming and going affordable.
type presence struct {
	h *Hub

	// mu guards the fields below. Lock order: presence.mu, then conn.mu.
	// Changes are queued under mu so that every subscriber sees them in one
	// order, after its full list.
	mu      sync.Mutex
	online  map[string]proto.Member
	subs    map[*conn]struct{}
	pending map[string]change
	// full is the encoded full list, built at most once per flush: a
	// subscriber that gets a list older than some pending changes gets
	// those changes at the next flush, and changes it already saw in the
	// list arrive again, which is harmless.
	full    []byte
	timer   *time.Timer
	stopped bool
}

type change struct {
	m      proto.Member
	online bool
}

func newPresence(h *Hub) *presence {
	return &presence{
		h:       h,
		online:  make(map[string]proto.Member),
		subs:    make(map[*conn]struct{}),
		pending: make(map[string]change),
	}
}

// change records that m came online or went offline; the next flush tells
// the subscribers.
func (p *presence) change(m proto.Member, online bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if online {
		p.online[m.Peer] = m
	} else {
		delete(p.online, m.Peer)
	}
	p.pending[m.Peer] = change{m, online}
	if p.timer == nil && !p.stopped {
		p.timer = time.AfterFunc(p.h.cfg.PresenceInterval, p.flush)
	}
}

// subscribe queues the full list for c and adds it to the feed.
func (p *presence) subscribe(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.full == nil {
		p.full = p.encodeFull()
	}
	p.subs[c] = struct{}{}
	_ = c.ws.Send(queued{Envelope: Envelope{Msg: p.full, Kind: KindPresence}})
}

func (p *presence) unsubscribe(c *conn) {
	p.mu.Lock()
	delete(p.subs, c)
	p.mu.Unlock()
}

// encodeFull encodes the online list, cut at MaxPresenceList. p.mu is held.
func (p *presence) encodeFull() []byte {
	limit := p.h.cfg.MaxPresenceList
	peers := make([]proto.Member, 0, min(len(p.online), limit))
	for _, m := range p.online {
		if len(peers) == limit {
			break
		}
		peers = append(peers, m)
	}
	b, _ := proto.New(proto.TypePresence, proto.Presence{
		Kind: proto.PresenceFull, Peers: peers, Truncated: len(p.online) > limit,
	}).Encode()
	return b
}

// flush sends the coalesced changes to every subscriber: offline first, then
// online, each cut into messages of at most MaxPresenceList peers.
func (p *presence) flush() {
	if !p.h.enter() {
		return
	}
	defer p.h.wg.Done()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timer = nil
	if len(p.pending) == 0 {
		return
	}
	var on, off []proto.Member
	for _, ch := range p.pending {
		if ch.online {
			on = append(on, ch.m)
		} else {
			off = append(off, ch.m)
		}
	}
	clear(p.pending)
	p.full = nil
	msgs := p.chunk(proto.PresenceOffline, off, nil)
	msgs = p.chunk(proto.PresenceOnline, on, msgs)
	for c := range p.subs {
		for _, b := range msgs {
			if c.ws.Send(queued{Envelope: Envelope{Msg: b, Kind: KindPresence}}) != nil {
				break
			}
		}
	}
}

func (p *presence) chunk(kind string, peers []proto.Member, msgs [][]byte) [][]byte {
	for len(peers) > 0 {
		n := min(len(peers), p.h.cfg.MaxPresenceList)
		b, _ := proto.New(proto.TypePresence, proto.Presence{Kind: kind, Peers: peers[:n]}).Encode()
		msgs = append(msgs, b)
		peers = peers[n:]
	}
	return msgs
}

// stop cancels a pending flush; Shutdown calls it.
func (p *presence) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
}
