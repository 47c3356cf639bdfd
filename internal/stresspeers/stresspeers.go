// Package stresspeers is what the stress tests' clients know of the other
// peers, for picking the targets of their signals: every peer id seen
// (Registry, many of them gone) and, per client, those seen lately in its
// rooms (Peers), read from what the server sends.
package stresspeers

import (
	"encoding/json"
	"math/rand/v2"
	"sync"

	"github.com/khadga/khadga/proto"
)

// Registry is every peer id seen by any client. Safe for concurrent use.
type Registry struct {
	mu    sync.Mutex
	peers []string
}

// Add records peer.
func (r *Registry) Add(peer string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.peers = append(r.peers, peer)
}

// Pick returns a peer id seen, "nobody" before any.
func (r *Registry) Pick(rng *rand.Rand) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.peers) == 0 {
		return "nobody"
	}
	return r.peers[rng.IntN(len(r.peers))]
}

// nearMax is how many peers of its rooms a client remembers.
const nearMax = 32

// Peers is one client's view: its resume token and the peers seen lately
// in its rooms. Its reader calls Saw; its own goroutine the rest.
type Peers struct {
	Reg *Registry

	mu     sync.Mutex
	resume string
	near   []string
}

// Saw takes a message the server sent: a welcome's resume token and peer
// id (it reports true for a welcome), the peers of joined and peer-joined.
func (p *Peers) Saw(b []byte) (welcome bool) {
	var m proto.Message
	if json.Unmarshal(b, &m) != nil {
		return false
	}
	switch m.Type {
	case proto.TypeWelcome:
		var w proto.Welcome
		if json.Unmarshal(m.Data, &w) == nil {
			p.mu.Lock()
			p.resume = w.ResumeToken
			p.mu.Unlock()
			p.Reg.Add(w.Peer)
			return true
		}
	case proto.TypeJoined:
		var j proto.Joined
		if json.Unmarshal(m.Data, &j) == nil {
			for _, mem := range j.Peers {
				p.note(mem.Peer)
			}
		}
	case proto.TypePeerJoined:
		var mem proto.Member
		if json.Unmarshal(m.Data, &mem) == nil {
			p.note(mem.Peer)
		}
	}
	return false
}

func (p *Peers) note(peer string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.near = append(p.near, peer)
	if len(p.near) > nearMax {
		p.near = p.near[1:]
	}
}

// Resume is the resume token of the last welcome, "" after Forget.
func (p *Peers) Resume() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resume
}

// Forget drops the resume token (the session was closed for good).
func (p *Peers) Forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resume = ""
}

// Target picks a signal's target: mostly a peer seen in one of the
// client's rooms, sometimes any peer ever seen (often gone, or sharing no
// room).
func (p *Peers) Target(rng *rand.Rand) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.near) > 0 && rng.IntN(5) > 0 {
		return p.near[rng.IntN(len(p.near))]
	}
	return p.Reg.Pick(rng)
}
