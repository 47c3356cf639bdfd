package cluster

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"time"
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
// the node that gave it), and the node that holds the target delivers
// each node's signals in that order: one that comes early waits, for at
// most orderWait, for those before it. What the old node expects next
// from each node goes to the new one in the claim's answer, so that the
// new node knows which signals are still on their way. A signal whose
// predecessors never come (one was refused on the way) waits orderWait
// once; one that comes after its successors were delivered is delivered
// at once. A node numbers only for nodes that said, in their heartbeats,
// that they take numbered signals (an older node in a rolling update
// gets them unnumbered, as before).
//
// What this does not order: a sender on the claiming node itself, whose
// signals to the session went through the old node until the claim and
// go straight to the session after it.
type orderer struct {
	n *Node

	outMu sync.Mutex
	out   map[string]uint64 // target peer -> the last number given

	// inMu is held while a numbered signal for a local session is
	// delivered, and across a claim's Release and the hand-over of what
	// it expected, so that no signal slips between the two.
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
}

// orderIdle is how long the order of a session that is not (or no longer)
// this node's is kept after its last signal, before run forgets it. The
// hub's end of a local session is not a place to forget it: Gone may be
// called under hub locks, which a delivery takes under o.inMu.
const orderIdle = 10 * time.Second

// orderWait bounds how long a signal that came early waits for those
// before it: far longer than the extra hop through a session's old node,
// far shorter than AckWait.
const orderWait = 250 * time.Millisecond

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
// has claimed, before the session is local here.
func (o *orderer) install(peer string, next map[string]uint64) {
	o.inMu.Lock()
	defer o.inMu.Unlock()
	for _, st := range o.in[peer] {
		delete(o.waiting, st)
	}
	delete(o.in, peer)
	if len(next) == 0 {
		return
	}
	bySrc := make(map[string]*inOrder, len(next))
	for src, seq := range next {
		if validToken(src) && seq > 0 {
			bySrc[src] = &inOrder{next: seq, touched: time.Now()}
		}
	}
	o.in[peer] = bySrc
}

// run delivers the signals that waited orderWait for those before them,
// until ctx ends.
func (o *orderer) run(ctx context.Context) {
	tick := time.NewTicker(orderWait / 4)
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
