package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/khadga/khadga/internal/bufpool"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// Deliver carries e to peer on node (hub.Delivery). A signal is tracked
// until its node says what became of it (tracker); everything else is
// sent and forgotten, as a room event to a gone node would be lost anyway.
func (n *Node) Deliver(node, peer string, e hub.Envelope) error {
	if n.live.isGone(node) {
		return hub.ErrPeerUnavailable
	}
	d := delivery{kind: e.Kind, to: peer, from: e.From, ref: e.Ref, origin: n.id, msg: e.Msg}
	if e.Kind == hub.KindSignal && n.live.numbered(node) {
		// Numbered once, by the first node that sends it to another;
		// forwarded with its number (order.go).
		d.osrc, d.oseq = e.OrderNode, e.OrderSeq
		if d.oseq == 0 {
			d.osrc, d.oseq = n.id, n.ord.number(peer)
		}
	}
	switch {
	case e.Held && e.Seq != 0:
		// A held signal handed on (Handover): its origin still tracks it,
		// and hears its fate from node directly.
		d.origin, d.seq = e.Origin, e.Seq
	case e.Kind == hub.KindSignal && e.From != "":
		d.seq = n.track.add(e.From, e.Ref, peer, node)
	}
	bp := bufpool.Get()
	if !n.out.publishPooled(n.subject("node", node), bp, appendDeliver((*bp)[:0], d), e.Kind == hub.KindSignal) {
		if d.seq != 0 && !e.Held {
			n.track.forget(d.seq) // added above; the caller is told
		}
		if d.osrc == n.id && e.OrderSeq == 0 {
			n.ord.unnumber(peer, d.oseq) // else the next would wait for it
		}
		return hub.ErrPeerUnavailable
	}
	n.stats.delivered.Inc()
	return nil
}

// handOver lets node have peer, a session of this node that node took
// without a claim reaching this node (the directory says so): what waited
// for it goes on to node (handOn), then the numbered signals that came
// early for it and wait in its order, which node orders, as onClaim sends
// them on. All under o.inMu, with the hub's Handover: a numbered signal
// handled in between would find the session gone and go on ahead of
// them; and early ones left behind would follow only when run gives up
// on them, after those sent to node since (this node's own, which relay
// sends straight to node once the session is not local).
func (n *Node) handOver(peer, node string) {
	n.ord.inMu.Lock()
	defer n.ord.inMu.Unlock()
	n.handOn(node, peer, n.hub.Handover(peer, node))
	if n.hub.IsLocal(peer) {
		return // still here: Handover did not let it go
	}
	_, early := n.ord.takeLocked(peer)
	for _, d := range early {
		n.deliverNow(d)
	}
}

// handOn delivers to node, which took the session peer, what waited for
// it here (Handover). A signal that cannot go is reported to its sender:
// by its origin, for a held one (Undelivered), else here.
func (n *Node) handOn(node, peer string, es []hub.Envelope) {
	moved := map[string][]uint64{} // held signals handed on, by origin
	for _, e := range es {
		err := n.Deliver(node, peer, e)
		switch {
		case err == nil && e.Kind == hub.KindSignal && e.Held && e.Seq != 0:
			moved[e.Origin] = append(moved[e.Origin], e.Seq)
		case err == nil || e.Kind != hub.KindSignal:
		case e.Held && e.Seq != 0:
			n.Undelivered([]hub.Envelope{e})
		case e.From != "":
			n.track.report(&tracked{from: e.From, ref: e.Ref, to: peer}, proto.CodePeerUnavailable,
				fmt.Sprintf("signal to peer %s was not delivered: it could not follow the peer to its new server", peer))
		}
	}
	// Their origins track them at node from now on: if this node dies,
	// they are not reported lost while node may still deliver them.
	for origin, seqs := range moved {
		if origin == n.id {
			n.track.moved(node, seqs)
		} else if !n.out.publish(n.subject("node", origin), appendMoved(nil, node, seqs)) {
			n.log.Debug("cluster: could not tell a signal's origin where it went: outbox full", slog.String("peer_node", origin))
		}
	}
}

// Delivered tells the origin nodes of held signals that they reached their
// sessions (hub.Delivery).
func (n *Node) Delivered(es []hub.Envelope) {
	byOrigin := map[string][]uint64{}
	for _, e := range es {
		if e.Origin == n.id {
			n.track.done(e.Seq)
			continue
		}
		byOrigin[e.Origin] = append(byOrigin[e.Origin], e.Seq)
	}
	for origin, seqs := range byOrigin {
		n.out.delivered(origin, seqs)
	}
}

// Undelivered tells the origin nodes of held signals that they will not
// reach their sessions (hub.Delivery): each origin tells the sender once.
func (n *Node) Undelivered(es []hub.Envelope) {
	for _, e := range es {
		a := ack{seq: e.Seq, status: ackUnavailable}
		if e.Origin == n.id {
			n.track.settle(a)
		} else {
			n.out.ack(e.Origin, a)
		}
	}
}

// onNodeMessage handles what other nodes send this one: deliveries for its
// sessions, and the fates of the signals it sent.
func (n *Node) onNodeMessage(m *nats.Msg) {
	if len(m.Data) == 0 {
		return
	}
	var err error
	switch m.Data[0] {
	case opDeliver, opNumbered:
		err = n.onDeliver(m.Data)
	case opAck:
		var acks []ack
		if acks, err = decodeAcks(m.Data); err == nil {
			for _, a := range acks {
				n.track.settle(a)
			}
		}
	case opState:
		err = n.onState(m.Data)
	case opDelivered:
		var seqs []uint64
		if seqs, err = decodeDelivered(m.Data); err == nil {
			for _, s := range seqs {
				n.track.done(s)
			}
		}
	case opMoved:
		var node string
		var seqs []uint64
		if node, seqs, err = decodeMoved(m.Data); err == nil {
			n.track.moved(node, seqs)
		}
	default:
		err = errBadMessage
	}
	if err != nil {
		n.stats.badMessages.Inc()
		n.log.Warn("cluster: bad message from another node", slog.Any("err", err))
	}
}

// onDeliver hands a delivery to the hub and acks a signal to its origin.
// A numbered signal for a session of this node waits for those numbered
// before it (order.go); one for a session elsewhere goes on with its
// number.
func (n *Node) onDeliver(b []byte) error {
	d, err := decodeDeliver(b)
	if err != nil {
		return err
	}
	n.stats.received.Inc()
	if d.oseq != 0 && d.kind == hub.KindSignal {
		n.ord.inMu.Lock()
		defer n.ord.inMu.Unlock()
		if n.hub.IsLocal(d.to) {
			n.ord.admitLocked(d, time.Now(), n.deliverNow)
			return nil
		}
	}
	n.deliverNow(d)
	return nil
}

// deliverNow hands d to the hub and acks a signal to its origin.
func (n *Node) deliverNow(d delivery) {
	e := hub.Envelope{Msg: d.msg, Kind: d.kind, From: d.from, Ref: d.ref, Borrowed: true, Origin: d.origin, Seq: d.seq,
		OrderNode: d.osrc, OrderSeq: d.oseq}
	held, err := n.hub.DeliverLocal(d.to, e)
	if d.seq == 0 {
		return
	}
	a := ack{seq: d.seq}
	switch {
	case errors.Is(err, hub.ErrUnknownPeer):
		a.status = ackUnknown
	case err != nil:
		a.status = ackUnavailable
	case held:
		a.status = ackHeld
	}
	if d.origin == n.id {
		n.track.settle(a) // delivered to a session that moved here meanwhile
	} else {
		n.out.ack(d.origin, a)
	}
}
