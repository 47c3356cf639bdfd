package cluster

import (
	"context"
	"sync"
)

// outbox is where everything this node sends to other nodes waits for the
// one goroutine that publishes it. The hub calls Delivery under its locks,
// and a NATS publish can block on the connection's socket: the outbox keeps
// that wait off the hub. It is bounded; a full outbox fails the delivery at
// once (the hub then tells the sender). Acks and delivered notices are
// merged per node, so that a busy node sends a few messages where it would
// send many.
type outbox struct {
	n     *Node
	mu    sync.Mutex
	msgs  []outMsg            // deliveries, in order
	acks  map[string][]ack    // per origin node
	notes map[string][]uint64 // delivered notices, per origin node
	count int
	wake  chan struct{}
}

type outMsg struct {
	subject string
	data    []byte
}

func newOutbox(n *Node) *outbox {
	return &outbox{n: n, acks: map[string][]ack{}, notes: map[string][]uint64{}, wake: make(chan struct{}, 1)}
}

// publish queues data for subject; it reports false if the outbox is full.
func (o *outbox) publish(subject string, data []byte) bool {
	o.mu.Lock()
	if o.count >= o.n.cfg.Outbox {
		o.mu.Unlock()
		o.n.stats.outboxFull.Inc()
		return false
	}
	o.msgs = append(o.msgs, outMsg{subject, data})
	o.count++
	o.mu.Unlock()
	o.poke()
	return true
}

// ack queues the fate of a delivered signal for its origin node.
func (o *outbox) ack(origin string, a ack) {
	o.mu.Lock()
	o.acks[origin] = append(o.acks[origin], a)
	o.count++
	o.mu.Unlock()
	o.poke()
}

// delivered queues notices that held signals reached their sessions.
func (o *outbox) delivered(origin string, seqs []uint64) {
	o.mu.Lock()
	o.notes[origin] = append(o.notes[origin], seqs...)
	o.count += len(seqs)
	o.mu.Unlock()
	o.poke()
}

func (o *outbox) poke() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// run publishes what is queued, until ctx ends.
func (o *outbox) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.wake:
		}
		o.mu.Lock()
		msgs, acks, notes := o.msgs, o.acks, o.notes
		o.msgs, o.acks, o.notes, o.count = nil, map[string][]ack{}, map[string][]uint64{}, 0
		o.mu.Unlock()
		for _, m := range msgs {
			o.send(m.subject, m.data)
		}
		for node, as := range acks {
			for len(as) > 0 {
				k := min(len(as), maxBatch)
				o.send(o.n.subject("node", node), appendAcks(nil, as[:k]))
				as = as[k:]
			}
		}
		for node, seqs := range notes {
			for len(seqs) > 0 {
				k := min(len(seqs), maxBatch)
				o.send(o.n.subject("node", node), appendDelivered(nil, seqs[:k]))
				seqs = seqs[k:]
			}
		}
	}
}

func (o *outbox) send(subject string, data []byte) {
	if err := o.n.nc.Publish(subject, data); err != nil {
		o.n.stats.publishErrors.Inc()
		o.n.log.Debug("cluster: publish failed", "subject", subject, "err", err)
	}
}
