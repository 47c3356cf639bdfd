package client

import (
	"encoding/json"
	"log/slog"
	"time"

	"github.com/khadga/khadga/proto"
)

// dispatch handles one server message on the reader goroutine. Membership
// changes are applied here, in order, so that a peer exists before the
// signals that follow its joined or peer-joined are handled.
func (c *Client) dispatch(m *proto.Message) {
	switch m.Type {
	case proto.TypeJoined:
		var j proto.Joined
		if err := m.DecodeData(&j); err != nil {
			c.log.Warn("bad joined", slog.Any("err", err))
			c.resolve(m.Ref, err)
			return
		}
		for _, mem := range j.Peers {
			c.addMember(m.Room, mem)
		}
		c.resolve(m.Ref, nil)
	case proto.TypeAck:
		c.resolve(m.Ref, nil)
	case proto.TypeError:
		var e proto.Error
		_ = m.DecodeData(&e)
		if m.Ref != "" {
			c.resolve(m.Ref, &ServerError{Code: e.Code, Message: e.Message})
		}
		c.log.Debug("server error", slog.String("ref", m.Ref), slog.String("code", string(e.Code)), slog.String("message", e.Message))
	case proto.TypePeerJoined:
		var mem proto.Member
		if err := m.DecodeData(&mem); err != nil {
			c.log.Warn("bad peer-joined", slog.Any("err", err))
			return
		}
		c.addMember(m.Room, mem)
	case proto.TypePeerLeft:
		var pl proto.PeerLeft
		if err := m.DecodeData(&pl); err != nil {
			c.log.Warn("bad peer-left", slog.Any("err", err))
			return
		}
		c.removeMember(m.Room, pl.Peer)
	case proto.TypeSignal:
		c.onSignal(m)
	case proto.TypePresence:
		c.onPresence(m)
	case proto.TypeReconnect:
		var r proto.Reconnect
		_ = m.DecodeData(&r)
		c.mu.Lock()
		c.after = time.Duration(min(max(r.After, 0), 60_000)) * time.Millisecond
		ws := c.ws
		c.mu.Unlock()
		c.log.Info("server asked us to reconnect", slog.Int("after_ms", r.After))
		if ws != nil {
			ws.Close()
		}
	case proto.TypePong, proto.TypeWelcome:
	default:
		c.log.Debug("ignoring message", slog.String("type", m.Type))
	}
}

func (c *Client) onSignal(m *proto.Message) {
	var s wireSignal
	if err := json.Unmarshal(m.Data, &s); err != nil || !s.valid() {
		c.log.Debug("bad signal", slog.String("from", m.From))
		return
	}
	c.mu.Lock()
	p := c.peers[m.From]
	if p == nil && m.Room != "" && c.rooms[m.Room] != nil {
		// A signal that overtook the peer-joined (possible across a
		// resume): make the peer now, its details follow.
		p = c.addMemberLocked(m.Room, proto.Member{Peer: m.From})
	}
	c.mu.Unlock()
	if p == nil {
		c.log.Debug("signal from a peer we share no room with", slog.String("from", m.From))
		return
	}
	p.handleSignal(s)
}

func (c *Client) onPresence(m *proto.Message) {
	var pr proto.Presence
	if err := m.DecodeData(&pr); err != nil {
		c.log.Debug("bad presence", slog.Any("err", err))
		return
	}
	c.mu.Lock()
	switch pr.Kind {
	case proto.PresenceFull:
		c.online = map[string]proto.Member{}
		fallthrough
	case proto.PresenceOnline:
		for _, mem := range pr.Peers {
			c.online[mem.Peer] = mem
		}
	case proto.PresenceOffline:
		for _, mem := range pr.Peers {
			delete(c.online, mem.Peer)
		}
	}
	c.mu.Unlock()
	c.emitClient(&Presence{Kind: pr.Kind, Peers: pr.Peers, Count: pr.Count})
}

func (c *Client) addMember(room string, mem proto.Member) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.addMemberLocked(room, mem)
}

// addMemberLocked records mem in room, making its peer connection if it is
// new. It returns the peer, or nil if the room is unknown or full.
func (c *Client) addMemberLocked(room string, mem proto.Member) *peer {
	r := c.rooms[room]
	if r == nil || mem.Peer == "" || mem.Peer == c.self.Peer {
		return nil
	}
	p := c.peers[mem.Peer]
	if p == nil {
		if len(c.peers) >= maxPeers {
			c.log.Warn("too many peers; ignoring member", slog.String("peer", mem.Peer))
			return nil
		}
		var err error
		p, err = newPeer(c.api, c.rtcCfg, c.self.Peer, mem, c, c.opts)
		if err != nil {
			c.log.Error("new peer", slog.String("peer", mem.Peer), slog.Any("err", err))
			return nil
		}
		c.peers[mem.Peer] = p
	}
	p.setMember(mem)
	open := p.addRoom(room)
	mem = p.Member()
	if r.addMember(mem) {
		r.emit(&MemberJoined{Room: room, Member: mem})
	}
	if open {
		r.emit(&PeerConnected{Room: room, Member: mem, Info: p.Info()})
	}
	r.reattach(p)
	return p
}

func (c *Client) removeMember(room, peerID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peers[peerID]
	if r := c.rooms[room]; r != nil {
		mem := proto.Member{Peer: peerID}
		if p != nil {
			mem = p.Member()
		}
		r.removeMember(mem)
	}
	if p != nil && p.removeRoom(room) == 0 {
		delete(c.peers, peerID)
		c.closePeer(p)
	}
}

// sendSignal is the peerHost side of the client.
func (c *Client) sendSignal(to, room string, s wireSignal) error {
	m := proto.New(proto.TypeSignal, s)
	m.To, m.Room = to, room
	return c.send(m)
}

// emit is the peerHost side of the client.
func (c *Client) emit(room string, ev Event) bool {
	c.mu.Lock()
	r := c.rooms[room]
	c.mu.Unlock()
	if r == nil {
		return false
	}
	return r.emit(ev)
}
