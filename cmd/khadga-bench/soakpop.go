//go:build linux

// The soak run's population of clients, and the ledger of its signals.

package main

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// soakPop is a fixed population of clients, each churning on its own.
type soakPop struct {
	st      *soakTarget
	cl      *client
	cfg     *config
	log     *slog.Logger
	clients []*soakClient
	track   *signalTrack
	stats   *soakStats
	rooms   int // rooms are soak-0 … soak-(rooms-1)
}

func newSoakPop(st *soakTarget, cl *client, cfg *config, log *slog.Logger) *soakPop {
	p := &soakPop{st: st, cl: cl, cfg: cfg, log: log, stats: &soakStats{}, rooms: max(1, cfg.SoakClients/soakRoomShare)}
	p.track = &signalTrack{open: map[uint64]*soakClient{}}
	// A few slow readers: one in a hundred, at least one.
	slow := max(1, cfg.SoakClients/100)
	seed := uint64(time.Now().UnixNano())
	for i := range cfg.SoakClients {
		p.clients = append(p.clients, &soakClient{p: p, slot: i, slow: i < slow,
			rng: rand.New(rand.NewPCG(seed, uint64(i)))})
	}
	return p
}

// churn runs every client for d, calls sample every -soak-every with the
// time since the start, then has every client close cleanly (each once
// it has heard the fate of every signal it sent) and waits for them.
func (p *soakPop) churn(ctx context.Context, d time.Duration, sample func(at time.Duration)) {
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	// Each client acts once per mean on average, so that all of them
	// together make -soak-rate operations/s.
	mean := time.Duration(float64(len(p.clients)) / p.cfg.SoakRate * float64(time.Second))
	var wg sync.WaitGroup
	for _, c := range p.clients {
		wg.Add(1)
		go func() { defer wg.Done(); c.run(cctx, mean) }()
	}
	if sample != nil {
		start := time.Now()
		tick := time.NewTicker(p.cfg.SoakEvery)
		for done := false; !done; {
			select {
			case <-cctx.Done():
				done = true
			case <-tick.C:
				// Not at the very end: the clients are closing then.
				if at := time.Since(start); at < d-p.cfg.SoakEvery/4 {
					sample(at)
				}
			}
		}
		tick.Stop()
	}
	wg.Wait()
}

// connected counts the clients with a socket open now.
func (p *soakPop) connected() int {
	n := 0
	for _, c := range p.clients {
		if c.open.Load() {
			n++
		}
	}
	return n
}

// signalTrack is the ledger of every signal sent: each is delivered (its
// target read it) or refused (its sender read an error naming it), and
// once only. What is open at the end was lost.
type signalTrack struct {
	mu                              sync.Mutex
	next                            uint64
	open                            map[uint64]*soakClient // by number: the sender, until its fate is known
	sent, delivered, refused, twice int64
	codes                           map[string]int64 // refusals by error code
}

// send opens the ledger entry of a new signal from c and returns its
// number.
func (t *signalTrack) send(c *soakClient) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next++
	t.open[t.next] = c
	t.sent++
	c.outstanding.Add(1)
	return t.next
}

// unsend forgets a signal whose write failed: it never left.
func (t *signalTrack) unsend(n uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.open[n]; ok {
		delete(t.open, n)
		t.sent--
		c.outstanding.Add(-1)
	}
}

// settle closes signal n's entry, delivered or refused with code; a
// second fate for one signal is counted as such.
func (t *signalTrack) settle(n uint64, delivered bool, code string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.open[n]
	if !ok {
		t.twice++
		return
	}
	delete(t.open, n)
	c.outstanding.Add(-1)
	if delivered {
		t.delivered++
		return
	}
	t.refused++
	if t.codes == nil {
		t.codes = map[string]int64{}
	}
	t.codes[code]++
}

// soakSignals is the ledger's summary.
type soakSignals struct {
	Sent      int64 `json:"sent"`
	Delivered int64 `json:"delivered"`
	// Refused came back to their senders as errors (the target left, or
	// the peers no longer shared a room), by code.
	Refused      int64            `json:"refused"`
	RefusedCodes map[string]int64 `json:"refused_codes,omitempty"`
	// Lost had no fate at the end; Twice are fates heard for a signal
	// whose fate was known already. Both must be 0.
	Lost  int64 `json:"lost"`
	Twice int64 `json:"twice"`
}

func (t *signalTrack) result() soakSignals {
	t.mu.Lock()
	defer t.mu.Unlock()
	return soakSignals{Sent: t.sent, Delivered: t.delivered, Refused: t.refused, RefusedCodes: t.codes,
		Lost: int64(len(t.open)), Twice: t.twice}
}

// soakStats counts what the clients did and met.
type soakStats struct {
	Sessions, Resumes, ResumesRefused, Drops, Closes, Abandons   atomic.Int64
	Joins, Leaves, Pings, ServerDrops, DialErrors, CloseTimeouts atomic.Int64
	Received, Presence, Stalls                                   atomic.Int64
	mu                                                           sync.Mutex
	errors                                                       map[string]int64 // error answers other than signals', by code
}

func (s *soakStats) countError(code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.errors == nil {
		s.errors = map[string]int64{}
	}
	s.errors[code]++
}

// soakOps is soakStats as reported.
type soakOps struct {
	Sessions       int64            `json:"new_sessions"`
	Resumes        int64            `json:"resumes"`
	ResumesRefused int64            `json:"resumes_refused"`
	Drops          int64            `json:"drops"`
	Closes         int64            `json:"clean_closes"`
	Abandons       int64            `json:"abandons"`
	Joins          int64            `json:"joins"`
	Leaves         int64            `json:"leaves"`
	Pings          int64            `json:"pings"`
	ServerDrops    int64            `json:"server_drops"`
	DialErrors     int64            `json:"dial_errors"`
	CloseTimeouts  int64            `json:"close_timeouts"`
	Received       int64            `json:"messages_received"`
	Presence       int64            `json:"presence_messages"`
	Stalls         int64            `json:"slow_reader_stalls"`
	Errors         map[string]int64 `json:"errors,omitempty"`
}

func (s *soakStats) snapshot() soakOps {
	s.mu.Lock()
	errs := make(map[string]int64, len(s.errors))
	for k, v := range s.errors {
		errs[k] = v
	}
	s.mu.Unlock()
	return soakOps{Sessions: s.Sessions.Load(), Resumes: s.Resumes.Load(), ResumesRefused: s.ResumesRefused.Load(),
		Drops: s.Drops.Load(), Closes: s.Closes.Load(), Abandons: s.Abandons.Load(), Joins: s.Joins.Load(),
		Leaves: s.Leaves.Load(), Pings: s.Pings.Load(), ServerDrops: s.ServerDrops.Load(), DialErrors: s.DialErrors.Load(),
		CloseTimeouts: s.CloseTimeouts.Load(), Received: s.Received.Load(), Presence: s.Presence.Load(),
		Stalls: s.Stalls.Load(), Errors: errs}
}
