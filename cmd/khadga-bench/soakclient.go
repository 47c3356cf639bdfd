//go:build linux

// One client of the soak run: it connects with the presence feed on (as
// the web app does), joins and leaves rooms, signals the peers it shares
// a room with, drops its socket and resumes, closes, abandons its session
// for a new one; a few read slowly.

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/khadga/khadga/proto"
)

const (
	// soakMaxRooms is the most rooms a client is in at once.
	soakMaxRooms = 4
	// closeWait bounds how long a client that means to close waits for
	// the fate of its signals: one to a peer whose socket is away comes
	// back refused only when that peer's resume window (30 s) ends.
	closeWait = 90 * time.Second
	// endWait bounds how long a socket the client closed takes to end.
	endWait = 10 * time.Second
)

// The ways a client ends its session (soakClient.closing).
const (
	closeNone    = iota
	closeClean   // a 1000 close: the session ends at once
	closeAbandon // the socket drops and the client opens a new session instead of resuming
)

// soakClient is one user. Its actor goroutine (run) owns the socket's
// writes and its life; a reader goroutine per socket reads.
type soakClient struct {
	p    *soakPop
	slot int
	slow bool
	rng  *rand.Rand // the actor's

	ws      *websocket.Conn
	done    chan struct{} // closed when the socket's reader ends
	ending  atomic.Bool   // the actor ended the socket itself
	open    atomic.Bool
	resume  string // the last welcome's resume token
	inProto bool   // that welcome said to send it as a subprotocol
	peer    string
	away    bool // the socket dropped: the next connect resumes
	closing int
	closeBy time.Time

	outstanding atomic.Int64 // signals sent whose fate is not known yet

	mu    sync.Mutex                 // guards rooms, shared with the reader
	rooms map[string]map[string]bool // room -> the other peers known in it
}

// run acts once per mean on average until ctx ends, then closes.
func (c *soakClient) run(ctx context.Context, mean time.Duration) {
	defer c.finish()
	t := time.NewTimer(time.Duration(c.rng.Int64N(int64(mean) + 1)))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.step()
		t.Reset(mean/2 + time.Duration(c.rng.Int64N(int64(mean)+1)))
	}
}

// step is one operation, picked at random, as users do things.
func (c *soakClient) step() {
	if c.ws != nil && c.ended() {
		c.p.stats.ServerDrops.Add(1)
		c.gone(true)
	}
	if c.ws == nil {
		c.connect()
		return
	}
	if c.closing != closeNone {
		c.tryClose()
		return
	}
	switch r := c.rng.IntN(100); {
	case r < 45:
		c.signal()
	case r < 60:
		c.join()
	case r < 72:
		c.leave()
	case r < 78:
		c.p.stats.Pings.Add(1)
		_ = c.write([]byte(`{"type":"ping","id":"p"}`))
	case r < 90:
		c.drop()
	case r < 96:
		c.closing, c.closeBy = closeClean, time.Now().Add(closeWait)
		c.tryClose()
	default:
		c.closing, c.closeBy = closeAbandon, time.Now().Add(closeWait)
		c.tryClose()
	}
}

// finish ends the client for good: a dropped session resumes first, so
// that what waits for it (its signals' errors) reaches it, then every
// signal's fate is awaited and the socket closes cleanly.
func (c *soakClient) finish() {
	for try := 0; c.ws == nil && c.away && try < 5; try++ {
		c.connect()
	}
	if c.ws == nil {
		return
	}
	c.closing, c.closeBy = closeClean, time.Now().Add(closeWait)
	for c.ws != nil && c.outstanding.Load() > 0 && time.Now().Before(c.closeBy) && !c.ended() {
		time.Sleep(50 * time.Millisecond) // polling a counter the readers move, with a deadline
	}
	c.tryClose()
	if c.ws != nil { // the server ended it meanwhile
		c.gone(false)
	}
}

// ended reports whether the socket's reader has ended.
func (c *soakClient) ended() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// connect opens a socket on a random node: a resume after a drop, else a
// new session.
func (c *soakClient) connect() {
	resume := ""
	if c.away {
		resume = c.resume
	}
	node := c.rng.IntN(len(c.p.st.nodes))
	ws, w, err := c.p.st.dial(node, c.slot, resume, c.inProto)
	if err != nil {
		c.p.stats.DialErrors.Add(1)
		c.p.log.Debug("soak: dial", slog.Int("slot", c.slot), slog.Any("err", err))
		return
	}
	c.mu.Lock()
	switch {
	case resume == "":
		c.p.stats.Sessions.Add(1)
		c.rooms = map[string]map[string]bool{}
	case w.Resumed && w.Peer == c.peer:
		c.p.stats.Resumes.Add(1)
		kept := map[string]map[string]bool{}
		for _, r := range w.Rooms {
			kept[r] = c.rooms[r]
			if kept[r] == nil {
				kept[r] = map[string]bool{}
			}
		}
		c.rooms = kept
	default:
		// The session was gone: whatever waited for it (errors naming
		// its signals) went with it, and shows as lost.
		c.p.stats.ResumesRefused.Add(1)
		c.rooms = map[string]map[string]bool{}
	}
	c.mu.Unlock()
	c.ws, c.resume, c.inProto, c.peer, c.away = ws, w.ResumeToken, w.ProtocolCredentials, w.Peer, false
	c.done = make(chan struct{})
	c.ending.Store(false)
	c.open.Store(true)
	go c.read(ws, c.done)
}

// write sends b; only the actor writes.
func (c *soakClient) write(b []byte) error {
	if err := c.ws.SetWriteDeadline(time.Now().Add(writeWait)); err != nil {
		return err
	}
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// join joins a random room, up to soakMaxRooms.
func (c *soakClient) join() {
	room := "soak-" + strconv.Itoa(c.rng.IntN(c.p.rooms))
	c.mu.Lock()
	if _, in := c.rooms[room]; in || len(c.rooms) >= soakMaxRooms {
		c.mu.Unlock()
		c.signal()
		return
	}
	c.rooms[room] = map[string]bool{}
	c.mu.Unlock()
	c.p.stats.Joins.Add(1)
	// The room in the id: an error answering it names the room only there.
	_ = c.write([]byte(`{"type":"join","id":"j` + room + `","room":"` + room + `"}`))
}

// leave leaves one of its rooms at random.
func (c *soakClient) leave() {
	c.mu.Lock()
	room := c.randomRoom()
	if room != "" {
		delete(c.rooms, room)
	}
	c.mu.Unlock()
	if room == "" {
		c.join()
		return
	}
	c.p.stats.Leaves.Add(1)
	_ = c.write([]byte(`{"type":"leave","id":"l","room":"` + room + `"}`))
}

// randomRoom is one of c's rooms, "" if none; c.mu is held.
func (c *soakClient) randomRoom() string {
	if len(c.rooms) == 0 {
		return ""
	}
	k := c.rng.IntN(len(c.rooms))
	for r := range c.rooms {
		if k == 0 {
			return r
		}
		k--
	}
	return ""
}

// signal sends a signal to a random peer of a random room of c's; its
// data carries the ledger's number, its id the same, so that either its
// target's read or the error naming it settles it.
func (c *soakClient) signal() {
	c.mu.Lock()
	var peers []string
	for p := range c.rooms[c.randomRoom()] {
		peers = append(peers, p)
	}
	c.mu.Unlock()
	if len(peers) == 0 {
		return
	}
	to := peers[c.rng.IntN(len(peers))]
	n := c.p.track.send(c)
	num := strconv.FormatUint(n, 10)
	if err := c.write([]byte(`{"type":"signal","id":"s` + num + `","to":"` + to + `","data":{"soak":` + num + `}}`)); err != nil {
		c.p.track.unsend(n)
	}
}

// drop ends the socket as a network drop would (a FIN and no close
// frame: the server keeps the session for a resume), reading what the
// server had written to it, so that a signal counts as lost only if the
// server lost it; the next step resumes.
func (c *soakClient) drop() {
	c.p.stats.Drops.Add(1)
	c.halfClose()
	c.gone(true)
}

// tryClose carries out a close decided before, once every signal c sent
// has its fate (or closeWait passed): after the close, an error naming
// one would reach nobody.
func (c *soakClient) tryClose() {
	if c.outstanding.Load() > 0 && time.Now().Before(c.closeBy) && !c.ended() {
		return
	}
	if c.outstanding.Load() > 0 {
		c.p.stats.CloseTimeouts.Add(1)
	}
	switch c.closing {
	case closeClean:
		c.p.stats.Closes.Add(1)
		c.ending.Store(true)
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		c.awaitEnd()
	case closeAbandon:
		c.p.stats.Abandons.Add(1)
		c.halfClose()
	}
	c.closing = closeNone
	c.gone(false)
}

// halfClose sends a FIN without a close frame and reads to the end.
func (c *soakClient) halfClose() {
	c.ending.Store(true)
	if tc, ok := c.ws.NetConn().(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	c.awaitEnd()
}

// awaitEnd waits for the reader to read the socket to its end.
func (c *soakClient) awaitEnd() {
	select {
	case <-c.done:
	case <-time.After(endWait):
		c.p.stats.countError("socket did not end in " + endWait.String())
	}
}

// gone forgets the socket; resume says whether the next connect resumes.
func (c *soakClient) gone(resume bool) {
	c.ws.Close()
	<-c.done
	c.ws, c.away = nil, resume
	c.open.Store(false)
}

// read reads ws until it ends. A slow reader dawdles over each message
// and now and then stalls for a second or more.
func (c *soakClient) read(ws *websocket.Conn, done chan struct{}) {
	defer close(done)
	for {
		if c.slow {
			c.dawdle()
		}
		_, b, err := ws.ReadMessage()
		if err != nil {
			if !c.ending.Load() && !isClosed(err) {
				c.p.log.Debug("soak: read", slog.Int("slot", c.slot), slog.Any("err", err))
			}
			return
		}
		c.handle(b)
	}
}

func (c *soakClient) dawdle() {
	time.Sleep(20 * time.Millisecond) // a slow reader is slow on purpose
	if rand.IntN(200) == 0 {
		c.p.stats.Stalls.Add(1)
		time.Sleep(time.Second + rand.N(2*time.Second))
	}
}

// handle takes one message from the server.
func (c *soakClient) handle(b []byte) {
	c.p.stats.Received.Add(1)
	if msgType(b) == proto.TypePresence {
		c.p.stats.Presence.Add(1)
		return
	}
	var m proto.Message
	if err := json.Unmarshal(b, &m); err != nil {
		c.p.stats.countError("unreadable message")
		return
	}
	switch m.Type {
	case proto.TypeSignal:
		var d struct {
			Soak uint64 `json:"soak"`
		}
		if json.Unmarshal(m.Data, &d) != nil || d.Soak == 0 {
			c.p.stats.countError("signal without its number")
			return
		}
		c.p.track.settle(d.Soak, true, "")
	case proto.TypeError:
		c.handleError(m)
	case proto.TypeJoined, proto.TypePeerJoined, proto.TypePeerLeft:
		c.member(m)
	}
}

// handleError settles a refused signal, or forgets a refused join.
func (c *soakClient) handleError(m proto.Message) {
	var e proto.Error
	_ = json.Unmarshal(m.Data, &e)
	code := string(e.Code)
	if num, ok := strings.CutPrefix(m.Ref, "s"); ok {
		if n, err := strconv.ParseUint(num, 10, 64); err == nil {
			c.p.track.settle(n, false, code)
			return
		}
	}
	if room, ok := strings.CutPrefix(m.Ref, "j"); ok {
		c.mu.Lock()
		delete(c.rooms, room)
		c.mu.Unlock()
	}
	c.p.stats.countError(code)
}

// member keeps c's view of who is in its rooms.
func (c *soakClient) member(m proto.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	peers, in := c.rooms[m.Room]
	if !in {
		return // left meanwhile
	}
	switch m.Type {
	case proto.TypeJoined:
		var j proto.Joined
		_ = json.Unmarshal(m.Data, &j)
		for _, p := range j.Peers {
			peers[p.Peer] = true
		}
	case proto.TypePeerJoined:
		var p proto.Member
		_ = json.Unmarshal(m.Data, &p)
		peers[p.Peer] = true
	case proto.TypePeerLeft:
		var p proto.PeerLeft
		_ = json.Unmarshal(m.Data, &p)
		delete(peers, p.Peer)
	}
}

// dial opens a socket on node for client slot, resuming with resume if
// set, and reads the welcome.
func (st *soakTarget) dial(node, slot int, resume string, inProto bool) (*websocket.Conn, proto.Welcome, error) {
	k := st.nodes[node]
	h := http.Header{}
	h.Set("Authorization", "Bearer "+k.tokens[slot%len(k.tokens)])
	d := *k.cl.dialer
	d.Subprotocols = []string{proto.Subprotocol}
	u := k.wsURL
	switch {
	case resume != "" && inProto:
		d.Subprotocols = append(d.Subprotocols, "khadga.resume."+resume)
	case resume != "":
		u += "&resume=" + resume
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, err := dialWS(ctx, &d, u, h)
	if err != nil {
		return nil, proto.Welcome{}, err
	}
	var m proto.Message
	if _, err := readJSON(ws, &m, 30*time.Second); err != nil {
		ws.Close()
		return nil, proto.Welcome{}, fmt.Errorf("read welcome: %w", err)
	}
	var w proto.Welcome
	if m.Type != proto.TypeWelcome || json.Unmarshal(m.Data, &w) != nil || w.Peer == "" {
		ws.Close()
		return nil, proto.Welcome{}, errors.New("first message is not a welcome with a peer id")
	}
	return ws, w, nil
}
