package hub

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/khadga/khadga/proto"
)

// The hub's timers (keepalive, resume window) with their default
// settings, on synctest's clock: the tests check the exact instants and
// take no time. Real sockets cannot run in a synctest bubble, so the
// clients here speak WebSocket frames over net.Pipe, which the hub serves
// as it serves any net.Conn (the portable wait of wsconn).

// Keepalive with the defaults (PongWait 60 s, PingPeriod 54 s, a sweep
// every 3 s): a silent client is pinged at 54 s and, if it never answers,
// dropped at the first sweep past 60 s, 63 s; one that answers every
// ping is pinged every 54 s and stays.
func TestKeepaliveOnTheClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newClockHub(t, Config{})
		start := time.Now()
		deaf := pipeDial(t, h, "deaf", false)
		polite := pipeDial(t, h, "polite", true)
		deaf.expect(proto.TypeWelcome)
		polite.expect(proto.TypeWelcome)

		if f := deaf.nextFrame(); f.op != opPing || f.at.Sub(start) != 54*time.Second {
			t.Fatalf("first frame to a silent client: op %d at %v, want a ping at 54s", f.op, f.at.Sub(start))
		}
		// It is pinged again at each sweep while it stays silent (57 s,
		// 60 s), then dropped.
		f := deaf.nextFrame()
		for ; f.op == opPing; f = deaf.nextFrame() {
		}
		if f.op != opEOF || f.at.Sub(start) != 63*time.Second {
			t.Fatalf("a client that never answers: op %d at %v, want dropped at 63s", f.op, f.at.Sub(start))
		}
		for i := 1; i <= 10; i++ {
			want := time.Duration(i) * 54 * time.Second
			if f := polite.nextFrame(); f.op != opPing || f.at.Sub(start) != want {
				t.Fatalf("ping %d to a client that answers: op %d at %v, want at %v", i, f.op, f.at.Sub(start), want)
			}
		}
		if n := h.Stats().Connections; n != 1 {
			t.Fatalf("connections after 9 minutes: %d, want 1 (the one that answers)", n)
		}
	})
}

// A session whose socket dropped waits exactly ResumeWindow (30 s by
// default) for its client: a member of its room sees it leave then, not
// before.
func TestResumeWindowOnTheClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newClockHub(t, Config{PongWait: time.Hour}) // no pings to answer
		alice := pipeDial(t, h, "alice", true)
		bob := pipeDial(t, h, "bob", true)
		alice.expect(proto.TypeWelcome)
		bob.expect(proto.TypeWelcome)
		alice.send(proto.Message{Type: proto.TypeJoin, ID: "1", Room: "r"})
		alice.expect(proto.TypeJoined)
		bob.send(proto.Message{Type: proto.TypeJoin, ID: "1", Room: "r"})
		bob.expect(proto.TypeJoined)
		alice.expect(proto.TypePeerJoined)

		bob.nc.Close() // the socket drops; the session waits
		dropped := time.Now()
		alice.expect(proto.TypePeerLeft)
		if took := time.Since(dropped); took != 30*time.Second {
			t.Fatalf("peer-left %v after the drop, want 30s", took)
		}
	})
}

// newClockHub starts a hub inside the bubble and shuts it down at the
// end, so that every goroutine of the bubble ends.
func newClockHub(t *testing.T, cfg Config) *Hub {
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = h.Shutdown(ctx)
	})
	return h
}

// pipeClient is a WebSocket client on one end of a net.Pipe whose other
// end the hub serves. A goroutine reads every frame (a pipe write waits
// for its reader) and, if pong is set, answers pings as browsers do.
type pipeClient struct {
	t      *testing.T
	nc     net.Conn
	frames chan frame
	pong   bool
}

type frame struct {
	op      byte
	payload []byte
	at      time.Time // when it arrived
}

const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xa
	opEOF   = 0xff // not a WebSocket opcode: the stream ended
)

func pipeDial(t *testing.T, h *Hub, user string, pong bool) *pipeClient {
	srv, cli := net.Pipe()
	c := &pipeClient{t: t, nc: cli, frames: make(chan frame, 64), pong: pong}
	go c.read()
	if err := h.Accept(srv, Identity{User: user, Role: "user"}, ConnOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return c
}

// read reads the server's (unmasked) frames until the stream ends.
func (c *pipeClient) read() {
	defer close(c.frames)
	br := bufio.NewReader(c.nc)
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			c.frames <- frame{op: opEOF, at: time.Now()}
			return
		}
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				c.frames <- frame{op: opEOF, at: time.Now()}
				return
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				c.frames <- frame{op: opEOF, at: time.Now()}
				return
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			c.frames <- frame{op: opEOF, at: time.Now()}
			return
		}
		f := frame{op: hdr[0] & 0x0f, payload: p, at: time.Now()}
		if f.op == opPing && c.pong {
			go c.write(opPong, p) // a pipe write waits for the hub's reader
		}
		c.frames <- f
	}
}

// write sends one masked frame.
func (c *pipeClient) write(op byte, p []byte) { _, _ = c.nc.Write(wholeFrame(0x80|op, p)) }

func (c *pipeClient) send(m proto.Message) {
	b, err := json.Marshal(m)
	if err != nil {
		c.t.Fatal(err)
	}
	c.write(opText, b)
}

// nextFrame returns the next frame, or opEOF once the stream ended.
func (c *pipeClient) nextFrame() frame {
	f, ok := <-c.frames
	if !ok {
		return frame{op: opEOF}
	}
	return f
}

// expect returns the next message, skipping control frames and presence,
// and checks its type.
func (c *pipeClient) expect(typ string) *proto.Message {
	c.t.Helper()
	for {
		f := c.nextFrame()
		switch f.op {
		case opEOF, opClose:
			c.t.Fatalf("connection ended, want %s", typ)
		case opText:
			var m proto.Message
			if err := json.Unmarshal(f.payload, &m); err != nil {
				c.t.Fatalf("bad message %q: %v", f.payload, err)
			}
			if m.Type == proto.TypePresence {
				continue
			}
			if m.Type != typ {
				c.t.Fatalf("got %s %s, want %s", m.Type, m.Data, typ)
			}
			return &m
		}
	}
}
