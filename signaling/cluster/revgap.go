package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Gaps in the revocation stream. A node cut off from NATS for longer than
// the stream keeps revocations (Config.RevocationReplay), or whose stream
// dropped some at its byte limit, comes back to a stream that no longer
// has all it had not taken: the ordered consumer asks for the sequence
// after its last and the server starts it at the first it still keeps,
// without a word (nats.go's ordered consumer checks its own delivery
// sequence, not the stream's). A stream deleted and made anew starts its
// sequences again, and the consumer would wait for one past its last.
// Either way the node cannot know what it missed, so it has its sessions
// checked against the store again (OnRevocationGap: package signaling
// does the checking), which every revocation is written to before it is
// published.
//
// The node finds a gap two ways, on goroutines of their own (never the
// consumer's, which only compares two numbers):
//
//   - a message from the stream whose sequence is past the one after the
//     last it took (revocationFeed.took): the consumer resumed past a gap;
//   - the stream's state (watchRevocationStream), read when the NATS
//     connection comes back, when the consumer reports trouble, and every
//     revocationGapCheck: its first sequence is past the one after the
//     last the node took (dropped before the consumer resumed, and perhaps
//     nothing came since), or the stream was made anew (its creation time
//     changed, or its last sequence is below the node's). A stream made
//     anew gets a new consumer, from its end.
//
// The state moves the node's place past what was dropped, so that the
// message after it finds no second gap. Reading the state a moment after
// the node's place can find a gap that is none (messages taken and
// dropped in between): one re-check too many, which ends nothing healthy.
//
// A gap wakes rechecks, which runs the re-check until it succeeds,
// retrying with backoff (recheckRetry to maxRecheckRetry) while the store
// cannot be read; gaps found while it runs make it run once more after,
// as they may come from revocations made after it read a session.

// revocationFeed is the node's consumer of the revocation stream and its
// place in it.
type revocationFeed struct {
	mu      sync.Mutex
	gen     int       // the consumer's; what an older one delivers moves nothing
	last    uint64    // the stream sequence of the last message taken, or the one the consumer started after
	created time.Time // the stream's creation time
	cc      jetstream.ConsumeContext
	closed  bool
}

// took records that the consumer of generation gen delivered the message
// of stream sequence seq, and reports whether messages before it that
// the node had not taken are gone.
func (f *revocationFeed) took(gen int, seq uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if gen != f.gen {
		return false
	}
	gap := seq > f.last+1
	f.last = max(f.last, seq)
	return gap
}

// place returns the node's place in the stream and the stream's creation
// time as the node knows it.
func (f *revocationFeed) place() (uint64, time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last, f.created
}

// skipTo moves the node's place to seq, if it is behind: what came before
// was dropped, and the store is read for it.
func (f *revocationFeed) skipTo(seq uint64) {
	f.mu.Lock()
	f.last = max(f.last, seq)
	f.mu.Unlock()
}

// stop stops the consumer for good.
func (f *revocationFeed) stop() {
	f.mu.Lock()
	cc := f.cc
	f.cc, f.closed = nil, true
	f.mu.Unlock()
	if cc != nil {
		cc.Stop()
	}
}

// consumeRevocationsFrom makes the node's consumer of the revocation
// stream st (created at created), from the sequence after last, in place
// of the one it had. onRevoke handles what it delivers, in the stream's
// order, until Close. The ordered consumer picks up after the last one it
// delivered when NATS comes back; it starts at a sequence number, not at
// "new" (DeliverNewPolicy), which it would start at again if NATS went
// away before it delivered anything.
func (n *Node) consumeRevocationsFrom(ctx context.Context, st jetstream.Stream, created time.Time, last uint64) error {
	f := &n.feed
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	old := f.cc
	f.gen++
	gen := f.gen
	f.cc, f.last, f.created = nil, last, created
	f.mu.Unlock()
	if old != nil {
		old.Stop()
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       last + 1,
		InactiveThreshold: n.cfg.revocationConsumerIdle,
	})
	if err != nil {
		return fmt.Errorf("cluster: revocation stream %s: %w", st.CachedInfo().Config.Name, err)
	}
	handle := n.handler(func(m *nats.Msg) { n.onRevoke(m, viaStream) })
	cc, err := c.Consume(func(m jetstream.Msg) {
		if md, err := m.Metadata(); err == nil && f.took(gen, md.Sequence.Stream) {
			n.revocationGap("the stream no longer has revocations this node had not taken")
		}
		// The reply subject ($JS.ACK...) is the stream's metadata: tests
		// tell the stream's copies by it.
		handle(&nats.Msg{Subject: m.Subject(), Reply: m.Reply(), Data: m.Data()})
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		n.log.Debug("cluster: revocation stream", slog.Any("err", err))
		kick(n.gapKick) // the consumer makes itself anew: look at the stream
	}))
	if err != nil {
		return fmt.Errorf("cluster: revocation stream %s: %w", st.CachedInfo().Config.Name, err)
	}
	f.mu.Lock()
	if f.closed || f.gen != gen {
		f.mu.Unlock()
		cc.Stop()
		return nil
	}
	f.cc = cc
	f.mu.Unlock()
	return nil
}

// kick wakes whoever waits on ch (of capacity 1), at once or when it next
// looks.
func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// revocationGapCheck is how often a node reads the revocation stream's
// state when nothing else made it look: a JetStream outage that left
// NATS core connected makes no reconnect.
const revocationGapCheck = 30 * time.Second

// watchRevocationStream looks for gaps in the revocation stream from its
// state (checkRevocationStream), until ctx ends: after NATS reconnects,
// when the consumer reports trouble, and every revocationGapCheck. A look
// that fails (NATS still away, JetStream slow) is tried again at the next
// tick, every Heartbeat.
func (n *Node) watchRevocationStream(ctx context.Context) {
	reconnects := n.nc.Stats().Reconnects
	pending, looked := false, time.Now()
	every(ctx, n.cfg.Heartbeat, func(now time.Time) {
		if r := n.nc.Stats().Reconnects; r != reconnects {
			reconnects, pending = r, true
		}
		select {
		case <-n.gapKick:
			pending = true
		default:
		}
		if !pending && now.Sub(looked) < revocationGapCheck || !n.nc.IsConnected() {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := n.checkRevocationStream(cctx)
		cancel()
		if err != nil {
			n.log.Debug("cluster: revocation stream: could not read its state", slog.Any("err", err))
			return
		}
		pending, looked = false, now
	})
}

// checkRevocationStream reads the revocation stream's state and reports
// a gap if it dropped what this node had not taken, or was made anew (it
// then gets a new consumer, from its end).
func (n *Node) checkRevocationStream(ctx context.Context) error {
	last, created := n.feed.place() // before the state: see the package comment on gaps
	name := revocationStream(n.cfg.Subject)
	st, err := n.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		// Nothing to read revocations from (NATS core still brings them);
		// a node that starts makes it again, and a look then finds it new.
		n.log.Warn("cluster: the revocation stream is gone", slog.String("stream", name))
		return nil
	}
	if err != nil {
		return err
	}
	info := st.CachedInfo() // as of the request just made
	switch {
	case !info.Created.Equal(created) || info.State.LastSeq < last:
		if err := n.consumeRevocationsFrom(ctx, st, info.Created, info.State.LastSeq); err != nil {
			return err
		}
		n.revocationGap("the revocation stream was made anew")
	case info.State.FirstSeq > last+1:
		n.feed.skipTo(info.State.FirstSeq - 1)
		n.revocationGap("the revocation stream no longer has revocations this node had not taken")
	}
	return nil
}

// revocationGap counts and logs a gap, and has this node's sessions
// checked again.
func (n *Node) revocationGap(why string) {
	n.gapStats.gaps.Inc()
	if n.recheck.Load() == nil {
		n.log.Warn("cluster: this node may have missed revocations, and has nothing to check its sessions with", slog.String("why", why))
		return
	}
	n.log.Warn("cluster: this node may have missed revocations: checking its sessions against the store", slog.String("why", why))
	kick(n.gaps)
}

// OnRevocationGap gives the node what checks its sessions against the
// store after a gap in the revocation stream, and ends those whose
// credentials no longer hold, as a revocation would (call it before
// Start; tests call it later). recheck runs on a goroutine of the node's,
// never two at once; it returns how many sessions it ended, and an error
// if it could not read the store, when it runs again later.
func (n *Node) OnRevocationGap(recheck func(ctx context.Context) (ended int, err error)) {
	n.recheck.Store(&recheck)
}

// recheckRetry and maxRecheckRetry bound the wait before a re-check that
// could not read the store runs again: it doubles from the one to the
// other.
const (
	recheckRetry    = 250 * time.Millisecond
	maxRecheckRetry = 30 * time.Second
)

// rechecks runs the re-check after each gap, until ctx ends.
func (n *Node) rechecks(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.gaps:
		}
		for wait := recheckRetry; ; wait = min(2*wait, maxRecheckRetry) {
			ended, err := (*n.recheck.Load())(ctx)
			n.gapStats.ended.Add(float64(ended))
			if err == nil {
				n.gapStats.rechecks.WithLabelValues("done").Inc()
				n.log.Info("cluster: sessions checked against the store after a gap in the revocation stream", slog.Int("ended", ended))
				break
			}
			if ctx.Err() != nil {
				return
			}
			n.gapStats.rechecks.WithLabelValues("store_error").Inc()
			n.log.Warn("cluster: could not check the sessions against the store after a gap in the revocation stream; trying again",
				slog.Any("err", err), slog.Int("ended", ended), slog.Duration("in", wait))
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

// gapMetrics count gaps in the revocation stream and what came of them.
type gapMetrics struct {
	gaps     prometheus.Counter
	rechecks *prometheus.CounterVec
	ended    prometheus.Counter
}

func newGapMetrics() *gapMetrics {
	return &gapMetrics{
		gaps: prometheus.NewCounter(prometheus.CounterOpts{Name: "khadga_cluster_revocation_gaps_total",
			Help: "Times this node found that the revocation stream no longer had revocations it had not taken (it was cut off for longer than the stream keeps them), or was made anew."}),
		rechecks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "khadga_cluster_rechecks_total",
			Help: "Checks of this node's sessions against the store after a gap in the revocation stream, by result: done, or store_error (the store could not be read; tried again)."}, []string{"result"}),
		ended: prometheus.NewCounter(prometheus.CounterOpts{Name: "khadga_cluster_recheck_ended_total",
			Help: "Sessions ended by those checks: their credentials were revoked while this node was cut off."}),
	}
}

func (m *gapMetrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.gaps, m.rechecks, m.ended} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
