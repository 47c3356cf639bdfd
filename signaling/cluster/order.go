package cluster

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/khadga/khadga/signaling/hub"
)

// Signals keep their order across a move. A session that resumes on
// another node leaves signals on their way to its old node: that node
// forwards them to the new one, a hop longer than the way of the signals
// their senders' nodes send straight to the new node once they hear of
// the move, and a signal that reaches the new node while its claim is
// still under way goes back to the old node and comes back later. Either
// would put an older signal after newer ones.
//
// So every node numbers the signals it sends to each session of another
// node (1, 2, 3, ... per target; a forwarded signal keeps its number and
// the node that gave it), and the node that holds the target delivers each
// node's signals in that order: one that comes early waits for those
// before it, orderWait at most without one of them coming (run looks every
// orderTick, so it is let go up to orderTick later: 250 to 312.5 ms). What
// the old node expects next from each node goes to the new one in the
// claim's answer, so that the new node knows which signals are still on
// their way, and those that came early go on to it, to wait there (also
// when the old node hears of the move only from the directory: handOver).
// A signal whose predecessors never come (one was refused on the way)
// waits that long once; one that comes after its successors were delivered
// is delivered at once. A node numbers only for nodes that said, in their
// heartbeats, that they take numbered signals (an older node in a rolling
// update gets them unnumbered, as before).
//
// A sender on the claiming node itself sent its signals to the session
// through the old node until the claim, and would send them straight to
// the session after it, past those still coming back from the old node.
// So, after a claim, the hub offers this node's signals to the session to
// Order first: while any that this node numbered for it before may still
// come (from the number the old node's answer says it expects of this
// node, or from 1 if the answer does not say: the old node, and those
// before it, which would have handed it on, took none of them), each is
// numbered after them and waits with them, as long as they would. Once
// none may still come, and no sooner than orderWait after the claim (a
// signal whose sender found the session still on the old node just as it
// became local here is numbered a moment later), the hub sends them
// straight again. Where a claim had no answer (its old node gone), the
// chain of answers is broken; a later claim that does not hear of this
// node's signals then waits for numbers that will not come, orderWait (and
// up to orderTick) once.
type orderer struct {
	n *Node

	outMu sync.Mutex
	out   map[string]uint64 // target peer -> the last number given

	// inMu is held while a numbered signal for a local session is
	// delivered, and across a claim's Release (or a Handover) and the
	// hand-over of what it expected, so that no signal slips between the
	// two. It is taken under the directory's applyMu (handOver), never
	// the reverse.
	inMu    sync.Mutex
	in      map[string]map[string]*inOrder // target peer -> numbering node -> state
	waiting map[*inOrder]struct{}          // those with early signals, for run
}

// inOrder is what a node expects next of another node's signals to one
// session, and the signals that came early.
type inOrder struct {
	next    uint64
	early   []delivery // sorted by oseq; their msg is a copy
	since   time.Time  // when the oldest early one came
	touched time.Time  // when a signal came, or the state was installed
	// until, for this node's own signals to a session it claimed, is the
	// earliest the hub may stop offering them to Order (orderWait after
	// the claim).
	until time.Time
}

// orderIdle is how long the order of a session that is not (or no longer)
// this node's is kept after its last signal, before run forgets it. The
// hub's end of a local session is not a place to forget it: Gone may be
// called under hub locks, which a delivery takes under o.inMu.
const orderIdle = 10 * time.Second

// orderWait is how long signals that came early wait, with none of
// those before them coming, before run lets them go: far longer than the
// extra hop through a session's old node, far shorter than AckWait. A
// variable only so that a test whose steps a loaded machine could
// stretch past it can lengthen it before its nodes start.
var orderWait = 250 * time.Millisecond

// orderTick is how often run looks for waits that are over: one ends
// between orderWait and orderWait+orderTick after it began.
const orderTick = 250 * time.Millisecond / 4

// maxEarly bounds the early signals kept per session and node: past it
// they are all delivered, as if their wait were over.
const maxEarly = 1024

func newOrderer(n *Node) *orderer {
	return &orderer{n: n, out: map[string]uint64{}, in: map[string]map[string]*inOrder{}, waiting: map[*inOrder]struct{}{}}
}

// number gives the next number of a signal this node sends to peer.
func (o *orderer) number(peer string) uint64 {
	o.outMu.Lock()
	defer o.outMu.Unlock()
	o.out[peer]++
	return o.out[peer]
}

// unnumber gives back seq, the number of a signal to peer that was never
// sent, if no later one was given meanwhile: the target would otherwise
// hold the next signal orderWait for it. A later one stays, and the next
// waits once.
func (o *orderer) unnumber(peer string, seq uint64) {
	o.outMu.Lock()
	defer o.outMu.Unlock()
	if o.out[peer] == seq {
		o.out[peer]--
	}
}

// forget drops the numbering of the signals to peer, a session of another
// node that ended.
func (o *orderer) forget(peer string) {
	o.outMu.Lock()
	delete(o.out, peer)
	o.outMu.Unlock()
}

// admitLocked takes a numbered signal for a local session and hands those
// now due to deliver, in order. o.inMu is held.
func (o *orderer) admitLocked(d delivery, now time.Time, deliver func(delivery)) {
	bySrc := o.in[d.to]
	if bySrc == nil {
		bySrc = map[string]*inOrder{}
		o.in[d.to] = bySrc
	}
	st := bySrc[d.osrc]
	if st == nil {
		// The first of this node's signals that this node sees: nothing
		// to wait for (a claim's answer would have said).
		st = &inOrder{next: d.oseq}
		bySrc[d.osrc] = st
	}
	st.touched = now
	switch {
	case d.oseq < st.next:
		deliver(d) // late: its successors went first
		return
	case d.oseq > st.next:
		i, found := slices.BinarySearchFunc(st.early, d.oseq, func(e delivery, seq uint64) int { return cmpU(e.oseq, seq) })
		if found {
			return // a copy: its wait goes on as it was
		}
		d.msg = bytes.Clone(d.msg)
		st.early = slices.Insert(st.early, i, d)
		if len(st.early) == 1 {
			st.since = now
			o.waiting[st] = struct{}{}
		}
		if len(st.early) > maxEarly {
			o.releaseAllLocked(st, deliver)
		}
		return
	}
	deliver(d)
	st.next++
	if len(st.early) == 0 {
		return
	}
	n := 0
	for n < len(st.early) && st.early[n].oseq == st.next {
		deliver(st.early[n])
		st.next++
		n++
	}
	st.early = slices.Delete(st.early, 0, n)
	if len(st.early) > 0 {
		st.since = now
	} else {
		delete(o.waiting, st)
	}
}

// releaseAllLocked gives up waiting: it hands every early signal of st to
// deliver, in order. o.inMu is held.
func (o *orderer) releaseAllLocked(st *inOrder, deliver func(delivery)) {
	for _, d := range st.early {
		deliver(d)
	}
	st.next = st.early[len(st.early)-1].oseq + 1
	st.early = nil
	delete(o.waiting, st)
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// takeLocked returns, for a session this node lets go, what it expects
// next of each node, and removes it with the signals that came early,
// which it returns too (for the hub to forward to the new node, which
// orders them). o.inMu is held.
func (o *orderer) takeLocked(peer string) (map[string]uint64, []delivery) {
	bySrc := o.in[peer]
	delete(o.in, peer)
	if len(bySrc) == 0 {
		return nil, nil
	}
	next := make(map[string]uint64, len(bySrc))
	var early []delivery
	for src, st := range bySrc {
		next[src] = st.next
		early = append(early, st.early...)
		delete(o.waiting, st)
	}
	return next, early
}

// install sets what this node expects next of each node for a session it
// has claimed, before the session is local here, from the old node's
// answer; with own (an answer came), of this node's own signals too: from
// 1 if the answer does not say (the old node took none of them, nor did
// the nodes before it, which would have handed that on: any it numbered
// may still be on their way).
func (o *orderer) install(peer string, next map[string]uint64, own bool) {
	now := time.Now()
	o.inMu.Lock()
	defer o.inMu.Unlock()
	for _, st := range o.in[peer] {
		delete(o.waiting, st)
	}
	delete(o.in, peer)
	bySrc := make(map[string]*inOrder, len(next)+1)
	for src, seq := range next {
		if validToken(src) && seq > 0 {
			bySrc[src] = &inOrder{next: seq, touched: now}
		}
	}
	if own {
		st := bySrc[o.n.id]
		if st == nil {
			st = &inOrder{next: 1, touched: now}
			bySrc[o.n.id] = st
		}
		st.until = now.Add(orderWait)
	}
	if len(bySrc) > 0 {
		o.in[peer] = bySrc
	}
}

// Order takes a signal from a session of this node to peer, a session
// this node claimed (hub.Delivery), while signals this node sent to peer
// before may still come back from the old node: it numbers it after them
// and delivers it in its turn (admitLocked), a failure reported to its
// sender through the tracker, as for a signal from another node. It is
// done once none may still come and orderWait has passed since the claim.
func (n *Node) Order(peer string, e hub.Envelope) (taken, done bool) {
	o := n.ord
	now := time.Now()
	o.inMu.Lock()
	defer o.inMu.Unlock()
	st := o.in[peer][n.id]
	if st == nil || !n.hub.IsLocal(peer) {
		return false, true // no order of its own, or it moved on
	}
	o.outMu.Lock()
	last := o.out[peer]
	o.outMu.Unlock()
	if st.next > last && len(st.early) == 0 {
		return false, !now.Before(st.until) // none on its way: straight to it
	}
	d := delivery{kind: hub.KindSignal, to: peer, from: e.From, ref: e.Ref, origin: n.id, osrc: n.id, oseq: o.number(peer), msg: e.Msg}
	d.seq = n.track.add(e.From, e.Ref, peer, n.id)
	o.admitLocked(d, now, n.deliverNow)
	return true, false
}

// run delivers, every orderTick, the signals that waited orderWait for
// those before them, until ctx ends.
func (o *orderer) run(ctx context.Context) {
	tick := time.NewTicker(orderTick)
	defer tick.Stop()
	idle := time.NewTicker(orderIdle)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			o.inMu.Lock()
			for st := range o.waiting {
				if now.Sub(st.since) >= orderWait {
					o.releaseAllLocked(st, o.n.deliverNow)
				}
			}
			o.inMu.Unlock()
		case now := <-idle.C:
			o.forgetIdle(now)
		}
	}
}

// forgetIdle forgets the order of sessions that are not this node's and
// had no signal for orderIdle.
func (o *orderer) forgetIdle(now time.Time) {
	o.inMu.Lock()
	defer o.inMu.Unlock()
	for peer, bySrc := range o.in {
		if o.n.hub.IsLocal(peer) {
			continue
		}
		quiet := true
		for _, st := range bySrc {
			quiet = quiet && len(st.early) == 0 && now.Sub(st.touched) >= orderIdle
		}
		if quiet {
			delete(o.in, peer)
		}
	}
}
