package hub

import (
	"container/list"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/khadga/khadga/proto"
)

// presence feeds the connections that asked for it (ConnOptions.Presence)
// with who is online, in one of two scopes (Config.PresenceScope):
//
//   - proto.ScopeGlobal: everyone online, in the order they came. The first
//     Config.MaxPresenceList are shown by name (the window), the rest only
//     counted. A subscriber gets the window once, then the window's changes,
//     coalesced over Config.PresenceInterval into at most two messages, and
//     count-only changes at most every countEvery. What one subscriber
//     costs is therefore bounded however many are online, and a
//     connect/disconnect loop costs one message per subscriber per
//     interval however fast it runs.
//   - proto.ScopeRooms: the peers one shares a room with. Joins and leaves
//     record, for each member of the room whose view changes, who appeared
//     or disappeared; each such watcher gets its changes at the next flush,
//     through Delivery (so a watcher on another node gets them too).
//
// Lock order: room.mu -> presence.mu -> session.mu -> wsconn's lock. Only
// a change of a room's membership in rooms scope (Hub.setMembers) takes a
// session lock under presence.mu, to queue the room's event; nothing that
// runs under presence.mu takes a room lock, or presence.mu under a
// session lock.
type presence struct {
	h     *Hub
	scope string
	limit int // Config.MaxPresenceList

	mu        sync.Mutex
	subs      map[*conn]struct{} // local subscribers (global scope)
	timer     *time.Timer
	lastFlush time.Time
	stopped   bool

	// Global scope. The window now (order, up to hidden) may differ from
	// the window as subscribers know it (published, as of the last
	// flush); changes is the difference. A new subscriber gets published,
	// so that every subscriber applies the same changes to the same list.
	order     list.List                // *onlineEntry, oldest first
	byPeer    map[string]*list.Element // into order
	hidden    *list.Element            // the first entry past the window; nil if none
	published map[string]proto.Member  // the window subscribers know
	changes   map[string]change        // from published to the window now
	full      []byte                   // published, encoded; nil until needed
	countSent int                      // the count subscribers know
	countAt   time.Time                // when they heard it

	// Rooms scope: per watcher's peer id, the changes it has not heard.
	views map[string]map[string]change
}

type onlineEntry struct {
	m     proto.Member
	shown bool // in the window
}

type change struct {
	m      proto.Member
	online bool
}

func newPresence(h *Hub) *presence {
	return &presence{
		h:         h,
		scope:     h.cfg.PresenceScope,
		limit:     h.cfg.MaxPresenceList,
		subs:      make(map[*conn]struct{}),
		byPeer:    make(map[string]*list.Element),
		published: make(map[string]proto.Member),
		changes:   make(map[string]change),
		views:     make(map[string]map[string]change),
	}
}

// countEvery spaces count-only updates: a busy server's count changes all
// the time, and nobody needs it more often.
func (p *presence) countEvery() time.Duration { return 10 * p.h.cfg.PresenceInterval }

// change records that m came online or went offline (Delivery.Presence).
func (p *presence) change(m proto.Member, online bool) {
	p.mu.Lock()
	if online {
		p.addLocked(m)
	} else {
		p.removeLocked(m.Peer)
	}
	views := p.scheduleLocked()
	p.mu.Unlock()
	p.deliverViews(views)
}

// addLocked appends m to the online list, in the window if it has room.
func (p *presence) addLocked(m proto.Member) {
	if _, ok := p.byPeer[m.Peer]; ok {
		return
	}
	e := &onlineEntry{m: m}
	el := p.order.PushBack(e)
	p.byPeer[m.Peer] = el
	if p.hidden == nil && p.order.Len() <= p.limit {
		e.shown = true
		p.windowChangeLocked(m, true)
	} else if p.hidden == nil {
		p.hidden = el
	}
}

// removeLocked takes peer off the online list; if it was shown, the first
// hidden entry takes its place in the window.
func (p *presence) removeLocked(peer string) {
	el, ok := p.byPeer[peer]
	if !ok {
		return
	}
	e := el.Value.(*onlineEntry)
	if p.hidden == el {
		p.hidden = el.Next()
	}
	delete(p.byPeer, peer)
	p.order.Remove(el)
	if !e.shown {
		return
	}
	p.windowChangeLocked(e.m, false)
	if p.hidden != nil {
		next := p.hidden.Value.(*onlineEntry)
		next.shown = true
		p.hidden = p.hidden.Next()
		p.windowChangeLocked(next.m, true)
	}
}

// windowChangeLocked notes a change of the window for the next flush: a
// difference from the published window, so that a peer that came and went
// within one interval costs nothing.
func (p *presence) windowChangeLocked(m proto.Member, online bool) {
	if _, known := p.published[m.Peer]; known == online {
		delete(p.changes, m.Peer)
		return
	}
	p.changes[m.Peer] = change{m, online}
}

// roomChangeLocked records that peer appeared (online) in, or disappeared
// from, watcher's view in rooms scope. It runs under the room's lock and
// p.mu (Hub.setMembers), so it never flushes: the timer does, which the
// caller arms.
func (p *presence) roomChangeLocked(watcher string, m proto.Member, online bool) {
	v := p.views[watcher]
	if v == nil {
		v = make(map[string]change)
		p.views[watcher] = v
	}
	if prev, ok := v[m.Peer]; ok && prev.online != online {
		delete(v, m.Peer)
	} else {
		v[m.Peer] = change{m, online}
	}
}

// scheduleLocked flushes now if the last flush was at least an interval
// ago (a lone change is told at once), or arms the flush for when it will
// be (a burst is told once). It returns the rooms-scope changes to deliver
// once p.mu is released.
func (p *presence) scheduleLocked() map[string]map[string]change {
	if p.timer != nil || p.stopped {
		return nil
	}
	if wait := p.h.cfg.PresenceInterval - time.Since(p.lastFlush); wait > 0 {
		p.armLocked(wait)
		return nil
	}
	return p.flushLocked()
}

// armLocked arms the flush timer unless it is armed.
func (p *presence) armLocked(after time.Duration) {
	if p.timer == nil && !p.stopped {
		p.timer = time.AfterFunc(after, p.flush)
	}
}

// subscribe adds c to the feed and queues its first message, the full list.
// It runs when c is attached to its session.
func (p *presence) subscribe(c *conn) {
	if p.scope == proto.ScopeRooms {
		// Computed after the connection is attached, so that a change
		// that happens meanwhile is either in this list or in a later
		// change (which arrives after it): the client's view ends right.
		_ = c.ws.Send(queued{Envelope: Envelope{Msg: p.roomsFull(c.s), Kind: KindPresence}})
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.full == nil {
		p.full = p.encodeWindowLocked()
	}
	p.subs[c] = struct{}{}
	_ = c.ws.Send(queued{Envelope: Envelope{Msg: p.full, Kind: KindPresence}})
}

func (p *presence) unsubscribe(c *conn) {
	p.mu.Lock()
	delete(p.subs, c)
	p.mu.Unlock()
}

// encodeWindowLocked encodes the published window as a full list, sorted
// by user and peer id.
func (p *presence) encodeWindowLocked() []byte {
	peers := slices.SortedFunc(maps.Values(p.published), func(a, b proto.Member) int {
		if a.User != b.User {
			return strings.Compare(a.User, b.User)
		}
		return strings.Compare(a.Peer, b.Peer)
	})
	if peers == nil {
		peers = []proto.Member{}
	}
	return encodePresence(proto.Presence{Kind: proto.PresenceFull, Peers: peers,
		Truncated: p.countSent > len(peers), Count: p.countSent, Scope: proto.ScopeGlobal})
}

// roomsFull lists the peers s shares a room with, cut at the limit.
func (p *presence) roomsFull(s *session) []byte {
	seen := map[string]proto.Member{}
	truncated := false
	s.roomsMu.RLock()
	for _, r := range s.rooms {
		for peer, o := range *r.members.Load() {
			if o == s {
				continue
			}
			if len(seen) == p.limit {
				truncated = true
				break
			}
			seen[peer] = o.member
		}
	}
	s.roomsMu.RUnlock()
	peers := slices.Collect(maps.Values(seen))
	if peers == nil {
		peers = []proto.Member{}
	}
	return encodePresence(proto.Presence{Kind: proto.PresenceFull, Peers: peers, Truncated: truncated, Scope: proto.ScopeRooms})
}

// flush sends what changed since the last flush: the timer's callback.
func (p *presence) flush() {
	if !p.h.enter() {
		return
	}
	defer p.h.wg.Done()
	p.mu.Lock()
	p.timer = nil
	views := p.flushLocked()
	p.mu.Unlock()
	p.deliverViews(views)
}

// flushLocked sends the global scope's changes and takes the rooms scope's,
// which the caller delivers once p.mu is released.
func (p *presence) flushLocked() map[string]map[string]change {
	p.lastFlush = time.Now()
	var views map[string]map[string]change
	if len(p.views) > 0 {
		views, p.views = p.views, make(map[string]map[string]change)
	}
	p.flushGlobalLocked()
	return views
}

// deliverViews delivers rooms-scope changes to their watchers, through
// Delivery (a watcher may be on another node). No lock may be held.
func (p *presence) deliverViews(views map[string]map[string]change) {
	for watcher, v := range views {
		for _, b := range p.encodeChanges(v, 0) {
			_ = p.h.send(watcher, Envelope{Msg: b, Kind: KindPresence})
		}
	}
}

// flushGlobalLocked sends the window's changes, or a count that changed, to
// every local subscriber. Sends never block: a subscriber that does not
// read is dropped by its own connection.
func (p *presence) flushGlobalLocked() {
	count := p.order.Len()
	var msgs [][]byte
	switch {
	case len(p.changes) > 0:
		msgs = p.encodeChanges(p.changes, count)
		for peer, ch := range p.changes {
			if ch.online {
				p.published[peer] = ch.m
			} else {
				delete(p.published, peer)
			}
		}
		clear(p.changes)
	case count != p.countSent:
		if wait := p.countEvery() - time.Since(p.countAt); wait > 0 {
			p.armLocked(wait)
			return
		}
		msgs = [][]byte{encodePresence(proto.Presence{Kind: proto.PresenceCount, Peers: []proto.Member{}, Count: count})}
	default:
		return
	}
	p.countSent, p.countAt = count, time.Now()
	p.full = nil
	n := 0
	for c := range p.subs {
		for _, b := range msgs {
			if c.ws.Send(queued{Envelope: Envelope{Msg: b, Kind: KindPresence}}) != nil {
				break
			}
		}
		// Each Send to an idle connection starts its writer, with a
		// stack; let them run and end every so often, so that a flush to
		// 10,000 subscribers has a few dozen writers at a time, not
		// 10,000 stacks at once (memory the process keeps afterwards).
		if n++; n%writerBurst == 0 {
			runtime.Gosched()
		}
	}
}

// writerBurst is how many subscribers a flush serves before it yields.
const writerBurst = 64

// encodeChanges encodes changes as an offline message, then an online one
// (either left out when empty), each with count (0: none).
func (p *presence) encodeChanges(changes map[string]change, count int) [][]byte {
	var on, off []proto.Member
	for _, ch := range changes {
		if ch.online {
			on = append(on, ch.m)
		} else {
			off = append(off, ch.m)
		}
	}
	var msgs [][]byte
	if len(off) > 0 {
		msgs = append(msgs, encodePresence(proto.Presence{Kind: proto.PresenceOffline, Peers: off, Count: count}))
	}
	if len(on) > 0 {
		msgs = append(msgs, encodePresence(proto.Presence{Kind: proto.PresenceOnline, Peers: on, Count: count}))
	}
	return msgs
}

func encodePresence(pr proto.Presence) []byte {
	b, _ := proto.New(proto.TypePresence, pr).Encode()
	return b
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
