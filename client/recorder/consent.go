package recorder

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/proto"
)

// Consent. A peer's client tells the recorder when its user grants or
// withdraws consent to being recorded in a room (client.RecordingConsent).
// The recorder writes each change to the room's consent log as it comes,
// records a peer's tracks only while it consents (packets before are
// dropped unread by the decoders), starts a clip's consent_time at the
// grant, and finishes the clips when consent is withdrawn.

// Limits on what a peer can make the recorder keep or write.
const (
	// maxPeersPerRoom bounds the peers a room keeps state for.
	maxPeersPerRoom = 256
	// maxConsentChanges bounds the consent changes logged per peer; a
	// peer past it is taken as withdrawn.
	maxConsentChanges = 64
)

// ConsentLine is one line of <room>-consent.jsonl.
type ConsentLine struct {
	Time    time.Time `json:"time"` // when the recorder got it
	Peer    string    `json:"peer"`
	User    string    `json:"user"`
	Granted bool      `json:"granted"`
	// SenderTime is the peer's clock when its user decided.
	SenderTime time.Time `json:"sender_time"`
}

// consentState is one peer's consent in one room.
type consentState struct {
	mu      sync.Mutex
	granted bool
	at      time.Time
	gen     int // grants so far: a new grant starts new clips
	changes int
}

// set records a grant or withdrawal at now and reports whether it changed
// anything (repeats do not).
func (c *consentState) set(granted bool, now time.Time) (changed, limited bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changes >= maxConsentChanges {
		c.granted = false
		return false, true
	}
	if granted == c.granted {
		return false, false
	}
	c.changes++
	c.granted, c.at = granted, now
	if granted {
		c.gen++
	}
	return true, false
}

// current returns the grant in force: its time and generation.
func (c *consentState) current() (time.Time, int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at, c.gen, c.granted
}

// errConsentWithdrawn ends a pipeline whose peer withdrew consent.
var errConsentWithdrawn = errors.New("recorder: consent withdrawn")

// consentReader hands a track's packets on only while its peer consents.
type consentReader struct {
	src     RTPReader
	c       *consentState
	gen     int
	held    *rtp.Packet
	attr    interceptor.Attributes
	dropped int64
}

// await drops packets until the peer consents and returns when it did.
// Packets are read (and dropped) so that the track does not stall.
func (g *consentReader) await() (time.Time, error) {
	for {
		pkt, attr, err := g.src.ReadRTP()
		if err != nil {
			return time.Time{}, err
		}
		if at, gen, ok := g.c.current(); ok {
			g.held, g.attr, g.gen = pkt, attr, gen
			return at, nil
		}
		g.dropped++
	}
}

// ReadRTP returns the next packet, or errConsentWithdrawn once the grant
// await returned is no longer in force.
func (g *consentReader) ReadRTP() (*rtp.Packet, interceptor.Attributes, error) {
	if g.held != nil {
		p, a := g.held, g.attr
		g.held, g.attr = nil, nil
		return p, a, nil
	}
	pkt, attr, err := g.src.ReadRTP()
	if err != nil {
		return nil, nil, err
	}
	if _, gen, ok := g.c.current(); !ok || gen != g.gen {
		return nil, nil, errConsentWithdrawn
	}
	return pkt, attr, nil
}

// SetReadDeadline wakes a blocked read, when the track can.
func (g *consentReader) SetReadDeadline(t time.Time) error {
	if d, ok := g.src.(interface{ SetReadDeadline(time.Time) error }); ok {
		return d.SetReadDeadline(t)
	}
	return nil
}

// roomRec is one recorded room: its output, its consent log, and what it
// knows of each peer.
type roomRec struct {
	name    string
	out     *Output
	log     *slog.Logger
	kept    time.Duration // audio kept per peer
	mu      sync.Mutex
	peers   map[string]*peerRec
	clog    *os.File
	limited bool // maxPeersPerRoom was hit (logged once)
	// chatBudget bounds the chat log each user fills (chat.go), and
	// chatDropped counts the lines dropped past it.
	chatBudget  chatBudgets
	chatDropped atomic.Int64
}

// peerRec is what the recorder keeps of one peer in one room.
type peerRec struct {
	member  proto.Member
	consent consentState
	sync    *avSync
	audio   *audioTimeline
	tracks  int       // tracks being handled; guarded by roomRec.mu
	gone    bool      // the member left
	cpu     *cpuMeter // its tracks' CPU budget (budget.go); guarded by roomRec.mu
}

func openRoom(oc OutputConfig, log *slog.Logger, kept time.Duration) (*roomRec, error) {
	out, err := OpenOutput(oc)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(oc.Dir, oc.Room+"-consent.jsonl"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		out.Close()
		return nil, fmt.Errorf("recorder: consent log: %w", err)
	}
	return &roomRec{name: oc.Room, out: out, log: log, kept: kept, peers: map[string]*peerRec{}, clog: f}, nil
}

func (rr *roomRec) close() {
	rr.out.Close()
	rr.clog.Close()
}

// peer returns the record of m, making one if there is room; the caller
// holds rr.mu.
func (rr *roomRec) peerLocked(m proto.Member) *peerRec {
	if p := rr.peers[m.Peer]; p != nil {
		return p
	}
	if len(rr.peers) >= maxPeersPerRoom {
		if !rr.limited {
			rr.limited = true
			rr.log.Warn("too many peers to keep track of; ignoring more", slog.Int("max", maxPeersPerRoom))
		}
		return nil
	}
	p := &peerRec{member: m, sync: newAVSync(), audio: newAudioTimeline(rr.kept)}
	rr.peers[m.Peer] = p
	return p
}

// consent records a peer's grant or withdrawal, in the consent log first.
func (rr *roomRec) consent(e *client.RecordingConsent) {
	rr.mu.Lock()
	p := rr.peerLocked(e.From)
	rr.mu.Unlock()
	if p == nil {
		return
	}
	changed, limited := p.consent.set(e.Granted, e.Received)
	log := rr.log.With(slog.String("peer", e.From.Peer), slog.String("user", e.From.User))
	if limited {
		log.Warn("ignoring consent changes past the limit; the peer is not recorded", slog.Int("max", maxConsentChanges))
		return
	}
	if !changed {
		return
	}
	line := ConsentLine{Time: e.Received.UTC(), Peer: e.From.Peer, User: e.From.User, Granted: e.Granted, SenderTime: e.Time.UTC()}
	if err := rr.writeConsent(line); err != nil {
		log.Error("consent not logged", "err", err)
	}
	log.Info("recording consent", slog.Bool("granted", e.Granted))
}

// writeConsent appends a line to the consent log, durably: it is the
// record of what the peer agreed to.
func (rr *roomRec) writeConsent(l ConsentLine) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if err := appendLine(rr.clog, b); err != nil {
		return err
	}
	if rr.out.cfg.NoSync {
		return nil
	}
	return rr.clog.Sync()
}

// left forgets a member that left: its consent ends with its session.
func (rr *roomRec) left(m proto.Member) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	p := rr.peers[m.Peer]
	if p == nil {
		return
	}
	p.consent.set(false, time.Now())
	p.gone = true
	if p.tracks == 0 {
		delete(rr.peers, m.Peer)
	}
}

// hold returns the record of the peer of a track and counts the track on
// it; release undoes it.
func (rr *roomRec) hold(m proto.Member) *peerRec {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	p := rr.peerLocked(m)
	if p != nil {
		p.tracks++
	}
	return p
}

// meter is the meter of p's tracks' CPU time, made on first use with
// share of a core over window.
func (rr *roomRec) meter(p *peerRec, share float64, window time.Duration, now time.Time) *cpuMeter {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if p.cpu == nil {
		p.cpu = newCPUMeter(share, window, now)
	}
	return p.cpu
}

func (rr *roomRec) release(p *peerRec) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if p.tracks--; p.tracks == 0 && p.gone {
		delete(rr.peers, p.member.Peer)
	}
}
