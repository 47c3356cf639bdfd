//go:build linux

// The scale run's load processes: the bench re-executed with
// KHADGA_BENCH_ROLE=load, so that no process holds more connections than
// its descriptor limit allows. The parent writes a loadSpec as the first
// line of the child's stdin, then loadCommands, one a line; the child
// answers with loadEvents on stdout, one a line, and exits when its stdin
// closes.

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/khadga/khadga/proto"
)

// roleEnv names the role of a re-executed bench; roleLoad is a load process.
const (
	roleEnv  = "KHADGA_BENCH_ROLE"
	roleLoad = "load"
)

// loadSpec is what a load process opens: Conns connections, the k-th to
// node (First+k) mod len(URLs), so that the processes together spread
// the connections evenly.
type loadSpec struct {
	URLs      []string      `json:"urls"` // the nodes' WebSocket URLs
	Tokens    []string      `json:"tokens"`
	Conns     int           `json:"conns"`
	First     int           `json:"first"`
	Dialers   int           `json:"dialers"`
	Heartbeat time.Duration `json:"heartbeat"`
}

// loadCommand is one request to a load process about its connection Conn.
type loadCommand struct {
	Op   string `json:"op"` // join, expect, send or stats
	Conn int    `json:"conn,omitempty"`
	Room string `json:"room,omitempty"`
	// Peer is, for join, a member to wait for; for expect, the sender;
	// for send, the recipient.
	Peer string `json:"peer,omitempty"`
}

// loadEvent is a load process's report: progress while it opens, ready
// with its peers, and the answer to each command.
type loadEvent struct {
	Event   string           `json:"event"` // progress, ready, joined, expecting, received, sent, stats, error
	Opened  int              `json:"opened,omitempty"`
	Peers   []loadPeer       `json:"peers,omitempty"` // ready: every connection's; joined: the room's members
	Conn    int              `json:"conn,omitempty"`
	Ms      float64          `json:"ms,omitempty"` // received: one-way latency
	Stats   *loadStats       `json:"stats,omitempty"`
	Error   string           `json:"error,omitempty"`
	Details map[string]int64 `json:"details,omitempty"`
}

type loadPeer struct {
	ID   string `json:"id"`
	Node int    `json:"node"`
}

// loadStats is what a load process's connections saw.
type loadStats struct {
	Received        int64 `json:"received"`
	Dropped         int64 `json:"dropped"`
	HeartbeatErrors int64 `json:"heartbeat_errors"`
	// Refused counts the rounds of dials that a node refused for now
	// (503, Retry-After) and that were tried again.
	Refused int64            `json:"refused_retried"`
	Errors  map[string]int64 `json:"errors,omitempty"`
}

// maxRefused is how long a load process goes on retrying refused dials
// with none opening before it gives up.
const maxRefused = time.Minute

// tapWait bounds the wait for an answer on a tapped connection.
const tapWait = 10 * time.Second

// loadMain is a load process's main: it returns the exit code.
func loadMain() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With(slog.Int("load", os.Getpid()))
	// SIGTERM and the parent's death (Pdeathsig) end the process at once:
	// the kernel closes its sockets.
	ctx := context.Background()
	raiseNoFile(log)
	out := &eventWriter{enc: json.NewEncoder(os.Stdout)}
	if err := runLoad(ctx, bufio.NewReader(os.Stdin), out, log); err != nil {
		log.Error("load process failed", slog.Any("err", err))
		out.send(loadEvent{Event: "error", Error: err.Error()})
		return 1
	}
	return 0
}

// eventWriter writes events from several goroutines, one a line.
type eventWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (w *eventWriter) send(e loadEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.enc.Encode(e)
}

func runLoad(ctx context.Context, in *bufio.Reader, out *eventWriter, log *slog.Logger) error {
	var spec loadSpec
	line, err := in.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("reading the spec: %w", err)
	}
	if err := json.Unmarshal(line, &spec); err != nil {
		return fmt.Errorf("the spec: %w", err)
	}
	cl := newClient(combo{Scheme: schemeWS, Client: clientTuned}, nil)
	defer cl.close()
	t := &clusterTarget{}
	for _, u := range spec.URLs {
		t.nodes = append(t.nodes, &khadgaTarget{wsURL: u, tokens: spec.Tokens, cl: cl, log: log})
	}
	t.next.Store(uint64(spec.First))
	ic := &idleConns{}
	hbCtx, stopHB := context.WithCancel(ctx)
	var hb sync.WaitGroup
	hb.Add(1)
	go func() { defer hb.Done(); ic.heartbeats(hbCtx, t.heartbeat(), spec.Heartbeat) }()
	defer func() { stopHB(); hb.Wait() }()
	const chunk = 500
	var stalled time.Time // since when refusals have let no connection open; zero: none
	for len(ic.conns) < spec.Conns {
		cs, err := dialMany(ctx, t, min(chunk, spec.Conns-len(ic.conns)), spec.Dialers)
		ic.add(cs)
		if len(cs) > 0 {
			stalled = time.Time{}
		}
		if err != nil {
			var later errRetryLater
			if !errors.As(err, &later) || !stalled.IsZero() && time.Since(stalled) > maxRefused {
				return fmt.Errorf("at %d connections: %w", len(ic.conns), err)
			}
			// Refused for now (the node's store did not answer in time):
			// wait and try again, as a client does.
			if stalled.IsZero() {
				stalled = time.Now()
			}
			ic.refused.Add(1)
			log.Warn("scale: a node refused connections for now; retrying", slog.Int("opened", len(ic.conns)), slog.Any("err", err))
			if err := sleepCtx(ctx, min(later.after, 5*time.Second)); err != nil {
				return err
			}
		}
		out.send(loadEvent{Event: "progress", Opened: len(ic.conns)})
	}
	peers := make([]loadPeer, len(ic.conns))
	for i, c := range ic.conns {
		peers[i] = loadPeer{ID: c.id, Node: c.node}
	}
	out.send(loadEvent{Event: "ready", Opened: len(ic.conns), Peers: peers})
	// On leaving, the kernel closes every socket when the process exits,
	// faster than 20,000 close handshakes.
	return serveCommands(ctx, in, out, ic)
}

// serveCommands answers the parent's commands until stdin closes.
func serveCommands(ctx context.Context, in *bufio.Reader, out *eventWriter, ic *idleConns) error {
	var expecting sync.WaitGroup
	defer expecting.Wait()
	for {
		line, err := in.ReadBytes('\n')
		if errors.Is(err, io.EOF) || ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		var cmd loadCommand
		if err := json.Unmarshal(line, &cmd); err != nil {
			return fmt.Errorf("command %.80q: %w", line, err)
		}
		if cmd.Conn < 0 || cmd.Conn >= len(ic.conns) {
			out.send(loadEvent{Event: "error", Conn: cmd.Conn, Error: "no such connection"})
			continue
		}
		c := ic.conns[cmd.Conn]
		switch cmd.Op {
		case "join":
			out.send(joinTapped(c, cmd))
		case "expect":
			// Tapped now, answered when the signal comes.
			tap := c.startTap()
			out.send(loadEvent{Event: "expecting", Conn: cmd.Conn})
			expecting.Add(1)
			go func() {
				defer expecting.Done()
				out.send(awaitSignal(c, tap, cmd))
			}()
		case "send":
			stamp := strconv.FormatInt(time.Now().UnixNano(), 10)
			b, _ := (&proto.Message{Type: proto.TypeSignal, To: cmd.Peer, Data: json.RawMessage(`{"t":"` + stamp + `"}`)}).Encode()
			if err := c.write(b); err != nil {
				out.send(loadEvent{Event: "error", Conn: cmd.Conn, Error: "send: " + err.Error()})
				continue
			}
			out.send(loadEvent{Event: "sent", Conn: cmd.Conn})
		case "stats":
			out.send(loadEvent{Event: "stats", Stats: &loadStats{Received: ic.received.Load(), Dropped: ic.dropped.Load(),
				HeartbeatErrors: ic.hbErrors.Load(), Refused: ic.refused.Load(), Errors: ic.errors()}})
		default:
			out.send(loadEvent{Event: "error", Error: fmt.Sprintf("unknown op %q", cmd.Op)})
		}
	}
}

// joinTapped joins c to cmd.Room and, with cmd.Peer, waits until c hears
// that cmd.Peer is a member: listed in its joined, or in a peer-joined
// that follows (a join on another node reaches c's node a moment later).
// It answers with the members that joined listed.
func joinTapped(c *benchConn, cmd loadCommand) loadEvent {
	tap := c.startTap()
	defer c.stopTap()
	join, _ := (&proto.Message{Type: proto.TypeJoin, ID: "scale", Room: cmd.Room}).Encode()
	if err := c.write(join); err != nil {
		return loadEvent{Event: "error", Conn: cmd.Conn, Error: "join: " + err.Error()}
	}
	timeout := time.After(tapWait)
	var ev *loadEvent
	for {
		select {
		case b := <-tap:
			var m proto.Message
			if json.Unmarshal(b, &m) != nil {
				continue
			}
			switch m.Type {
			case proto.TypeJoined:
				var j proto.Joined
				_ = json.Unmarshal(m.Data, &j)
				ev = &loadEvent{Event: "joined", Conn: cmd.Conn}
				for _, p := range j.Peers {
					ev.Peers = append(ev.Peers, loadPeer{ID: p.Peer})
				}
				if cmd.Peer == "" || slices.ContainsFunc(ev.Peers, func(p loadPeer) bool { return p.ID == cmd.Peer }) {
					return *ev
				}
			case proto.TypePeerJoined:
				var mem proto.Member
				if ev != nil && json.Unmarshal(m.Data, &mem) == nil && mem.Peer == cmd.Peer {
					return *ev
				}
			case proto.TypeError:
				return loadEvent{Event: "error", Conn: cmd.Conn, Error: "join: " + string(m.Data)}
			}
		case <-timeout:
			return loadEvent{Event: "error", Conn: cmd.Conn, Error: fmt.Sprintf("no joined, or no word of %q in it or after it, in %v", cmd.Peer, tapWait)}
		}
	}
}

// awaitSignal waits on c's tap for a signal from cmd.Peer.
func awaitSignal(c *benchConn, tap <-chan []byte, cmd loadCommand) loadEvent {
	defer c.stopTap()
	timeout := time.After(tapWait)
	for {
		select {
		case b := <-tap:
			var m proto.Message
			if json.Unmarshal(b, &m) != nil || m.Type != proto.TypeSignal || m.From != cmd.Peer {
				continue
			}
			var d struct {
				T string `json:"t"`
			}
			_ = json.Unmarshal(m.Data, &d)
			sent, _ := strconv.ParseInt(d.T, 10, 64)
			return loadEvent{Event: "received", Conn: cmd.Conn, Ms: ms(time.Now().UnixNano() - sent)}
		case <-timeout:
			return loadEvent{Event: "error", Conn: cmd.Conn, Error: fmt.Sprintf("no signal from %s in %v", cmd.Peer, tapWait)}
		}
	}
}
