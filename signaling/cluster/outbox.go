package cluster

import (
	"context"
	"log/slog"
	"sync"

	"github.com/khadga/khadga/internal/bufpool"
)

// outbox is where everything this node sends to other nodes waits for the
// one goroutine that publishes it. The hub calls Delivery under its locks,
// and a NATS publish can block on the connection's socket: the outbox keeps
// that wait off the hub. It is bounded, in messages and in bytes
// (Config.Outbox, Config.OutboxBytes), as a connection's send queue is: a
// signal that finds it at the limits fails at once (the hub then tells the
// sender), and everything else (sessions' states and ends, room events,
// reports to senders, limiter news) may take it to twice the limits, so
// that a flood of signals does not crowd out what keeps the nodes'
// directories in step. The batch being published counts against the
// limits until NATS has taken all of it: a publish may block for as long
// as the connection's flusher lets it, and meanwhile what comes waits in
// the next batch. Acks and delivered notices are
// merged per node, so that a busy node sends a few messages where it would
// send many. They count one message each (their bytes are few), and are
// refused at twice the limit in messages as the rest is: one refused is
// counted (khadga_cluster_signal_fates_dropped_total), and its signal's
// origin, never told its fate, tells the sender after AckWait (HeldWait
// for a held one) that the signal was not delivered. The sender hears
// "not delivered" of a signal that may have reached its peer: never
// silence about one that did not.
type outbox struct {
	n      *Node
	mu     sync.Mutex
	batch        // what waits
	flying batch // what the publisher publishes now; empty between runs
	spare  batch // the last one published, emptied, for the next swap
	count  int   // messages, acks and notices of batch and flying
	bytes  int   // of batch.msgs and flying.msgs
	wake   chan struct{}
	done   bool // flushRest ran: nothing more will be published
}

// batch is what the outbox holds between two runs of its publisher.
type batch struct {
	msgs  []outMsg            // deliveries, in order
	acks  map[string][]ack    // per origin node
	notes map[string][]uint64 // delivered notices, per origin node
}

func newBatch() batch { return batch{acks: map[string][]ack{}, notes: map[string][]uint64{}} }

// reset empties b, keeping its storage for the next batch.
func (b *batch) reset() {
	clear(b.msgs)
	b.msgs = b.msgs[:0]
	clear(b.acks)
	clear(b.notes)
}

type outMsg struct {
	subject string
	data    []byte
	pooled  *[]byte // data's buffer, from bufpool; nil if data is not pooled
}

func newOutbox(n *Node) *outbox {
	return &outbox{n: n, batch: newBatch(), spare: newBatch(), wake: make(chan struct{}, 1)}
}

// publish queues data for subject, which is not a signal; it reports false
// if the outbox is full (twice its limits). The outbox publishes data
// later, so the caller must not change it.
func (o *outbox) publish(subject string, data []byte) bool {
	return o.add(outMsg{subject: subject, data: data}, 2)
}

// publishPooled is publish for data in a buffer from bufpool, which
// the outbox gives back once data is published (or refused). A signal
// is refused at the outbox's limits.
func (o *outbox) publishPooled(subject string, bp *[]byte, data []byte, signal bool) bool {
	k := 2
	if signal {
		k = 1
	}
	return o.add(outMsg{subject: subject, data: data, pooled: bp}, k)
}

// add queues m unless the outbox holds k times its limits.
func (o *outbox) add(m outMsg, k int) bool {
	o.mu.Lock()
	if o.done {
		o.mu.Unlock()
		m.release()
		return false // the node is closed: refused, so that the hub tells the sender now
	}
	if o.count >= k*o.n.cfg.Outbox || o.bytes+len(m.data) > k*o.n.cfg.OutboxBytes {
		o.mu.Unlock()
		o.n.stats.outboxFull.Inc()
		m.release()
		return false
	}
	o.msgs = append(o.msgs, m)
	o.count++
	o.bytes += len(m.data)
	o.mu.Unlock()
	o.poke()
	return true
}

func (m outMsg) release() {
	if m.pooled != nil {
		bufpool.Put(m.pooled, m.data)
	}
}

// ack queues the fate of a delivered signal for its origin node, unless
// the outbox holds twice its limit in messages (see outbox).
func (o *outbox) ack(origin string, a ack) {
	o.mu.Lock()
	if o.done {
		o.mu.Unlock()
		o.send(o.n.subject("node", origin), appendAcks(nil, []ack{a})) // late: no publisher is left to merge it
		return
	}
	if o.room(1) == 0 {
		o.mu.Unlock()
		o.dropFates(1)
		return
	}
	o.acks[origin] = append(o.acks[origin], a)
	o.count++
	o.mu.Unlock()
	o.poke()
}

// delivered queues notices that held signals reached their sessions, as
// many as there is room for (see ack).
func (o *outbox) delivered(origin string, seqs []uint64) {
	o.mu.Lock()
	if o.done {
		o.mu.Unlock()
		o.send(o.n.subject("node", origin), appendDelivered(nil, seqs)) // late, as in ack
		return
	}
	k := o.room(len(seqs))
	o.notes[origin] = append(o.notes[origin], seqs[:k]...)
	o.count += k
	o.mu.Unlock()
	if k < len(seqs) {
		o.dropFates(len(seqs) - k)
	}
	if k > 0 {
		o.poke()
	}
}

// room returns how many of n acks or notices the outbox takes: up to
// twice its limit in messages, as for everything but signals. o.mu is
// held.
func (o *outbox) room(n int) int {
	return max(0, min(n, 2*o.n.cfg.Outbox-o.count))
}

// dropFates counts n acks or notices refused; their origin reports the
// signals as not delivered once it stops waiting for their fates.
func (o *outbox) dropFates(n int) {
	o.n.stats.outboxFull.Inc()
	o.n.stats.fatesDropped.Add(float64(n))
	o.n.log.Debug("cluster: outbox full: the fates of signals from another node are dropped", slog.Int("signals", n))
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
		// Swap in the spare batch, publish the full one, and keep its
		// storage as the next spare: a busy outbox allocates no maps.
		// What the full one holds leaves count and bytes once published.
		o.mu.Lock()
		b, count, bytes := o.batch, o.count, o.bytes
		o.batch, o.flying, o.spare = o.spare, b, batch{}
		o.mu.Unlock()
		o.flush(&b)
		o.mu.Lock()
		o.flying = batch{}
		o.count -= count
		o.bytes -= bytes
		o.mu.Unlock()
		b.reset()
		o.mu.Lock()
		o.spare = b
		o.mu.Unlock()
	}
}

// flushRest publishes what waits, once the publisher has stopped (Close):
// the last acks and hand-ons of a node that leaves would otherwise go with
// it, and their senders would hear "not delivered" for signals that were.
func (o *outbox) flushRest() {
	o.mu.Lock()
	b := o.batch
	o.batch, o.count, o.bytes, o.done = newBatch(), 0, 0, true
	o.mu.Unlock()
	o.flush(&b)
}

// flush publishes a batch.
func (o *outbox) flush(b *batch) {
	for _, m := range b.msgs {
		o.send(m.subject, m.data)
		m.release()
	}
	for node, as := range b.acks {
		for len(as) > 0 {
			k := min(len(as), maxBatch)
			o.send(o.n.subject("node", node), appendAcks(nil, as[:k]))
			as = as[k:]
		}
	}
	for node, seqs := range b.notes {
		for len(seqs) > 0 {
			k := min(len(seqs), maxBatch)
			o.send(o.n.subject("node", node), appendDelivered(nil, seqs[:k]))
			seqs = seqs[k:]
		}
	}
}

func (o *outbox) send(subject string, data []byte) {
	if hook := o.n.testHookSend.Load(); hook != nil {
		(*hook)(subject, data)
	}
	if err := o.n.nc.Publish(subject, data); err != nil {
		o.n.stats.publishErrors.Inc()
		o.n.log.Debug("cluster: publish failed", "subject", subject, "err", err)
	}
}
