package hub

import (
	"bytes"
	"errors"

	"github.com/khadga/khadga/proto"
)

// Errors of Delivery.Deliver.
var (
	// ErrUnknownPeer means no session has the peer id (or it has ended).
	ErrUnknownPeer = errors.New("hub: unknown peer")
	// ErrPeerUnavailable means the session exists but cannot take the
	// message: its connection's send queue overflowed (and the connection
	// was dropped as a slow consumer), or its socket is away and its absent
	// queue is full.
	ErrPeerUnavailable = errors.New("hub: peer unavailable")
)

// Kind says what a queued message is, which decides what happens when it
// cannot be delivered.
type Kind uint8

// Kinds of Envelope.
const (
	// KindSignal is a forwarded signal: if it is dropped, its sender gets
	// peer_unavailable naming it.
	KindSignal Kind = iota + 1
	// KindEvent is a room event, an answer or an error: kept for an absent
	// session, dropped silently if its queue is full.
	KindEvent
	// KindPresence is presence: never kept for an absent session, which gets
	// a fresh full list when it resumes.
	KindPresence
	// KindReport is an error telling a sender that its signal was dropped.
	// It may exceed the send-queue limit up to twice it: when a target's
	// queue is dropped, many reports go to its senders at once, and their
	// number is bounded by the signals those senders sent.
	KindReport
)

// Envelope is one encoded server message on its way to a session.
type Envelope struct {
	// Msg is the encoded message. It is shared between recipients and must
	// not be modified after it is handed over.
	Msg  []byte
	Kind Kind
	// From and Ref name the sender's peer id and request id of a signal, so
	// that a drop can be reported to the sender.
	From, Ref string
	// Borrowed says Msg is valid only until Deliver returns: a Delivery
	// that keeps the message (queues it, or sends it on asynchronously)
	// must keep a copy. Signals are borrowed, so that one written to its
	// target at once costs no allocation (and, at 10,000 signals/s, no
	// garbage collection five times a second).
	Borrowed bool
}

// owned returns e with a Msg of its own, safe to keep.
func (e Envelope) owned() Envelope {
	if e.Borrowed {
		e.Msg = bytes.Clone(e.Msg)
		e.Borrowed = false
	}
	return e
}

// Delivery carries messages to sessions by peer id. The hub uses it for
// everything it sends to a session other than the one whose request it is
// handling, so that a multi-node version (NATS subjects per node, with
// JetStream KV for the session directory) can replace the local one without
// reshaping the hub. Deliver and Presence never block on a socket.
type Delivery interface {
	// Deliver hands e to the session with id peer. It returns
	// ErrUnknownPeer or ErrPeerUnavailable when it cannot; otherwise the
	// message is queued on the session's connection, or in its absent queue
	// while its socket is away.
	Deliver(peer string, e Envelope) error
	// Presence announces that a session came online (or went offline), for
	// every presence subscriber on every node.
	Presence(m proto.Member, online bool)
}

// LocalDelivery delivers to the sessions of h alone: the single-node
// Delivery, and what a multi-node one uses for peers on its own node.
func LocalDelivery(h *Hub) Delivery { return localDelivery{h} }

type localDelivery struct{ h *Hub }

func (d localDelivery) Deliver(peer string, e Envelope) error {
	s, ok := d.h.sessions.get(peer)
	if !ok {
		return ErrUnknownPeer
	}
	return s.deliver(e)
}

func (d localDelivery) Presence(m proto.Member, online bool) {
	d.h.presence.change(m, online)
}
