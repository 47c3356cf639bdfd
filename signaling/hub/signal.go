package hub

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/khadga/khadga/internal/bufpool"
	"github.com/khadga/khadga/proto"
)

// forward relays a signal to its target, stamped with the sender's peer id.
// The hot path: one map read per room of the sender, one encode into a
// single buffer, one queue append. Signals get no ack; failures get an error
// naming the signal by its id.
func (h *Hub) forward(c *conn, m *proto.Message) {
	s := c.s
	if m.To == s.member.Peer {
		c.replyError(m.ID, proto.CodeBadMessage, "a signal cannot be addressed to yourself")
		return
	}
	if !h.shareRoom(s, m.To, m.Room) {
		if _, ok := h.sessions.get(m.To); !ok {
			c.replyError(m.ID, proto.CodeUnknownPeer, "no peer %s", m.To)
		} else if m.Room != "" {
			c.replyError(m.ID, proto.CodeNotInRoom, "you and peer %s are not both in room %s", m.To, m.Room)
		} else {
			c.replyError(m.ID, proto.CodeNotInRoom, "you share no room with peer %s", m.To)
		}
		return
	}
	bp := bufpool.Get()
	out := appendSignal((*bp)[:0], m.Room, s.member.Peer, m.Data)
	err := h.relay(m.To, Envelope{Msg: out, Kind: KindSignal, From: s.member.Peer, Ref: m.ID, Borrowed: true})
	bufpool.Put(bp, out)
	switch {
	case err == nil:
	case errors.Is(err, ErrUnknownPeer):
		c.replyError(m.ID, proto.CodeUnknownPeer, "no peer %s", m.To)
	default:
		c.replyError(m.ID, proto.CodePeerUnavailable, "peer %s cannot take signals now; the signal was dropped", m.To)
	}
}

// relay delivers e, a signal from a session of this node, to the session
// with id peer, as send does. If this node claimed that session from
// another (a resume here), e is offered to Delivery.Order first, until it
// is done: signals sent to the session before the claim may still be on
// their way through the old node, and e must not overtake them. Only
// signals from this node's sessions come here; those Delivery carries
// here (DeliverLocal) never reach Order.
//
// The flag is read with no lock, and a claim may make the session local
// between the read and the delivery: the delivery looks again under s.mu,
// which the claim holds as it sets both (errMustOrder).
func (h *Hub) relay(peer string, e Envelope) error {
	s, ok := h.sessions.get(peer)
	if !ok {
		return ErrUnknownPeer
	}
	for {
		claim := s.ordered.Load()
		if hook := h.testHookRelayLoaded.Load(); hook != nil {
			(*hook)()
		}
		if claim == 0 {
			_, err := s.deliverChecked(e, true)
			if !errors.Is(err, errMustOrder) {
				return err
			}
			continue // claimed since the load: to Order
		}
		taken, done := h.delivery.Order(peer, e)
		if done {
			s.ordered.CompareAndSwap(claim, 0)
		}
		if taken {
			return nil
		}
		return s.deliver(e)
	}
}

// errMustOrder is what relay's delivery of a signal it found not ordered
// gets when the session was claimed (became local, and ordered) since: the
// signal was not delivered, and relay offers it to Delivery.Order.
var errMustOrder = errors.New("hub: the session was claimed: the signal goes to Order")

// appendSignal appends {"type":"signal","room":..,"from":..,"data":..} to b.
// room and from need no escaping: proto.ValidRoom and randomID allow only
// [A-Za-z0-9._-]. data is the raw JSON the client sent, already checked by
// decode.
func appendSignal(b []byte, room, from string, data json.RawMessage) []byte {
	const (
		head    = `{"type":"signal"`
		roomKey = `,"room":"`
		fromKey = `,"from":"`
		dataKey = `","data":`
	)
	b = append(b, head...)
	if room != "" {
		b = append(b, roomKey...)
		b = append(b, room...)
		b = append(b, '"')
	}
	b = append(b, fromKey...)
	b = append(b, from...)
	b = append(b, dataKey...)
	b = append(b, data...)
	return append(b, '}')
}

// mustJSON marshals a value of a proto data type, which always marshals.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("hub: marshal %T: %v", v, err))
	}
	return b
}
