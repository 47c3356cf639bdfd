package hub

import (
	"errors"
	"time"

	"github.com/khadga/khadga/proto"
)

// Errors of delivery.
var (
	// ErrUnknownPeer means no session has the peer id (or it has ended).
	ErrUnknownPeer = errors.New("hub: unknown peer")
	// ErrPeerUnavailable means the session exists but cannot take the
	// message: its connection's send queue is at its limits, its socket is
	// away and its absent queue is full, or its node is gone.
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
	// Borrowed says Msg is valid only until the call that hands it over
	// returns: whoever keeps it (a queue) keeps a copy.
	Borrowed bool
	// Origin and Seq name a signal that came from another node, so that
	// its node can be told when it reaches a connection (Delivery.Delivered)
	// after waiting in an absent queue. Zero for everything else.
	Origin string
	Seq    uint64
	// OrderNode and OrderSeq are a signal's place in the order of the
	// signals that node sent to its target, for the target's node to keep
	// across a move to another node (package cluster). The hub only
	// carries them.
	OrderNode string
	OrderSeq  uint64
	// Held says such a signal waited in an absent queue, so its node was
	// told so and still tracks it: only Delivered or Undelivered settle
	// it. (One queued on a live connection was acked delivered, and its
	// node forgot it: if it is dropped after all, the hub tells the sender
	// itself.)
	Held bool
}

// SessionState is what the nodes of a cluster know of a session: enough to
// route to it, to check who shares a room with it, to show it in presence,
// and to resume it on any node.
type SessionState struct {
	Member proto.Member
	// Node is the node that holds the session (its connection, or its
	// absent queue while the socket is away).
	Node   string
	Rooms  []string
	Grants []string // room grants of its token; empty means any
	Login  string   // the sign-in of its token
	KeyID  string   // the key of its token
	// TokenHash is the SHA-256 of its current resume token.
	TokenHash []byte
	// Away is when its socket went away, while it waits for its client
	// to resume; zero while it has a connection. The other nodes count
	// it against Config.MaxConnsPerUser either way, and may ask its node
	// to end it when it waits (Delivery.EndWaiting).
	Away time.Time
}

// Elsewhere is what this node knows of one user's sessions on the other
// nodes of a cluster, for Config.MaxConnsPerUser (Delivery.Elsewhere).
type Elsewhere struct {
	// Open counts those with a connection open.
	Open int
	// Waiting lists those that wait for their clients to resume, oldest
	// first.
	Waiting []Waiting
	// Resumes says the resume token asked about names one of them (its
	// client resumes it here: no new session), and TakesOver that this
	// one still has its connection open (the claim ends it).
	Resumes, TakesOver bool
}

// Waiting is a session of another node that waits for its client to
// resume.
type Waiting struct {
	Peer, Node string
	Since      time.Time
}

// Delivery carries what crosses nodes. The hub uses it to reach sessions
// that another node holds (their stand-ins here are proxies, made by
// Apply), to tell the other nodes about its own sessions, and to resume a
// session that another node holds. A single node has nowhere to carry
// anything: nil in Config means LocalDelivery. Package cluster is the
// multi-node Delivery, over NATS.
//
// No method may block on a socket or wait on another node while the hub
// holds a lock: Deliver, Publish and Gone only queue (they are called under
// room and session locks); Claim and Order are called with no hub lock
// held.
type Delivery interface {
	// Deliver carries e to peer, a session held by node. A failure comes
	// back later, as a report to e's sender (e.From) if it has one. It
	// returns ErrPeerUnavailable at once if node is known to be gone.
	Deliver(node, peer string, e Envelope) error
	// Publish tells the other nodes the state of a session of this node:
	// it started, resumed, or joined or left a room. Gone tells them that
	// it ended.
	Publish(st SessionState)
	Gone(peer string)
	// Claim takes, for a resume on this node, the session of another node
	// that tokenHash names, if it is user's: it returns the session's state
	// and the messages that waited for it, and the other node lets it go
	// (Release). It returns ErrUnknownPeer if no session has that token.
	Claim(tokenHash []byte, user string) (SessionState, []Envelope, error)
	// Order is offered each signal from a session of this node to peer,
	// a session this node claimed, until it reports done (the hub asks
	// again after peer's next claim): signals to peer that this node sent
	// before the claim may still come back from the old node, and a
	// later one must not overtake them. If it takes e (taken), it
	// delivers e with DeliverLocal in its turn, and reports a failure to
	// e's sender itself; else the hub delivers e. It must not block:
	// it may only hold e back for a bounded time.
	Order(peer string, e Envelope) (taken, done bool)
	// Delivered tells the nodes that messages from them (Origin, Seq),
	// which had waited for a session whose socket was away, reached its
	// connection. Undelivered tells them that such messages will not
	// reach it (the session ended, or its queue was full): their nodes
	// tell the senders.
	Delivered(es []Envelope)
	Undelivered(es []Envelope)
	// SessionsElsewhere counts user's sessions on other nodes, as far as
	// this node knows (those of nodes taken for gone too); it is asked for
	// every new connection, and must be cheap.
	SessionsElsewhere(user string) int
	// Elsewhere returns what this node knows of user's sessions on other
	// nodes, and whether tokenHash (nil for none) names one of them. It
	// must not block: it is asked for every new connection.
	Elsewhere(user string, tokenHash []byte) Elsewhere
	// EndWaiting asks node to end peer, a session of user waiting there
	// for its client to resume, to make room for a new session of user
	// here (Hub.EndWaiting on that node). It reports whether peer is gone
	// now: false if its client resumed meanwhile, or node did not answer
	// in time. It waits for node's answer; the hub calls it with no lock
	// held, on the goroutine that accepts the connection.
	EndWaiting(node, peer, user string) bool
}

// LocalDelivery is the Delivery of a single node: no session is anywhere
// else.
func LocalDelivery() Delivery { return localDelivery{} }

type localDelivery struct{}

func (localDelivery) Deliver(string, string, Envelope) error { return ErrUnknownPeer }
func (localDelivery) Publish(SessionState)                   {}
func (localDelivery) Gone(string)                            {}
func (localDelivery) Claim([]byte, string) (SessionState, []Envelope, error) {
	return SessionState{}, nil, ErrUnknownPeer
}
func (localDelivery) Order(string, Envelope) (bool, bool) { return false, true }
func (localDelivery) Delivered([]Envelope)                {}
func (localDelivery) Undelivered([]Envelope)              {}
func (localDelivery) SessionsElsewhere(string) int        { return 0 }
func (localDelivery) Elsewhere(string, []byte) Elsewhere  { return Elsewhere{} }
func (localDelivery) EndWaiting(string, string, string) bool {
	return false
}

// send delivers e to the session with id peer, wherever it is: queued on
// its connection here, kept in its absent queue, or carried to its node.
func (h *Hub) send(peer string, e Envelope) error {
	s, ok := h.sessions.get(peer)
	if !ok {
		return ErrUnknownPeer
	}
	return s.deliver(e)
}

// DeliverLocal delivers e, which came from another node, to peer: the
// entry point of messages that Delivery carried here. held says e waits in
// the absent queue of a session whose socket is away (Delivered follows
// if it reaches a connection). A session that moved on meanwhile gets e
// where it is now.
func (h *Hub) DeliverLocal(peer string, e Envelope) (held bool, err error) {
	s, ok := h.sessions.get(peer)
	if !ok {
		return false, ErrUnknownPeer
	}
	return s.deliverHeld(e)
}

// delivered tells Delivery which of items came from other nodes and have
// now reached a connection.
func (h *Hub) delivered(items []queued) {
	var es []Envelope
	for _, it := range items {
		if it.Seq != 0 {
			e := it.Envelope
			e.Msg = nil // the writer may have written it and given it back
			es = append(es, e)
		}
	}
	if len(es) > 0 {
		h.delivery.Delivered(es)
	}
}
