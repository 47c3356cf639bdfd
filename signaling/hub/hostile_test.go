package hub

import (
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/proto"
)

// maskedFrame builds a client frame: b0 is the first byte as sent (FIN,
// reserved bits, opcode), length the length the header claims (which may
// differ from len(payload)), and the payload is masked unless unmasked.
func maskedFrame(b0 byte, length uint64, payload []byte, unmasked bool) []byte {
	maskBit := byte(0x80)
	if unmasked {
		maskBit = 0
	}
	b := []byte{b0}
	switch {
	case length < 126:
		b = append(b, maskBit|byte(length))
	case length <= 0xffff:
		b = append(b, maskBit|126, byte(length>>8), byte(length))
	default:
		b = append(b, maskBit|127)
		b = binary.BigEndian.AppendUint64(b, length)
	}
	if unmasked {
		return append(b, payload...)
	}
	key := [4]byte{7, 1, 4, 2}
	b = append(b, key[:]...)
	for i, x := range payload {
		b = append(b, x^key[i%4])
	}
	return b
}

// wholeFrame is a masked frame of payload.
func wholeFrame(b0 byte, payload []byte) []byte {
	return maskedFrame(b0, uint64(len(payload)), payload, false)
}

// hostileConfig drops a connection that completes no frame for 2 s (the
// sweeper looks every 125 ms), so that a client stuck mid-frame is seen to
// go within the test's bounds.
func hostileConfig() Config {
	cfg := freezeConfig()
	cfg.PingPeriod, cfg.PongWait = 500*time.Millisecond, 2*time.Second
	return cfg
}

// hostileFrameCase is a sequence of bytes an attacker writes on an open
// connection, and the close code it must get (-1: dropped without one).
type hostileFrameCase struct {
	name    string
	bytes   [][]byte // written in order
	trickle bool     // each write a byte at a time, until the connection ends
	code    int
	tooBig  bool // a too_large error comes before the close
}

func hostileFrameCases() []hostileFrameCase {
	ping := []byte(`{"type":"ping","id":"after"}`)
	return []hostileFrameCase{
		{name: "header, then no payload", bytes: [][]byte{maskedFrame(0x81, 60<<10, nil, false)}, code: websocket.CloseAbnormalClosure},
		{name: "a frame a byte at a time", bytes: [][]byte{maskedFrame(0x81, 60<<10, make([]byte, 60<<10), false)}, trickle: true, code: websocket.CloseAbnormalClosure},
		{name: "half a header", bytes: [][]byte{{0x81, 0xff, 0, 0}}, code: websocket.CloseAbnormalClosure},
		{name: "length 2^63", bytes: [][]byte{maskedFrame(0x81, 1<<63, nil, false)}, code: 1009, tooBig: true},
		{name: "length 2^63-1", bytes: [][]byte{maskedFrame(0x81, 1<<63-1, nil, false)}, code: 1009, tooBig: true},
		{name: "fragments past the limit", bytes: [][]byte{wholeFrame(0x01, make([]byte, 40<<10)), maskedFrame(0x80, 40<<10, nil, false)}, code: 1009, tooBig: true},
		{name: "ping of 126 bytes", bytes: [][]byte{wholeFrame(0x89, make([]byte, 126))}, code: 1002},
		{name: "fragmented ping", bytes: [][]byte{wholeFrame(0x09, nil)}, code: 1002},
		{name: "close with code 1005", bytes: [][]byte{wholeFrame(0x88, []byte{0x03, 0xed})}, code: 1002},
		{name: "close with code 999", bytes: [][]byte{wholeFrame(0x88, []byte{0x03, 0xe7})}, code: 1002},
		{name: "close with a bad UTF-8 reason", bytes: [][]byte{wholeFrame(0x88, []byte{0x03, 0xe8, 0xff, 0xfe})}, code: 1002},
		{name: "close of 126 bytes", bytes: [][]byte{wholeFrame(0x88, append([]byte{0x03, 0xe8}, make([]byte, 124)...))}, code: 1002},
		{name: "close, then more", bytes: [][]byte{append(wholeFrame(0x88, []byte{0x0f, 0xa0}), wholeFrame(0x81, ping)...)}, code: 4000},
		{name: "unmasked", bytes: [][]byte{maskedFrame(0x81, uint64(len(ping)), ping, true)}, code: 1002},
		{name: "compressed (RSV1)", bytes: [][]byte{wholeFrame(0xc1, ping)}, code: 1002},
		{name: "RSV2 and RSV3", bytes: [][]byte{wholeFrame(0xb1, ping)}, code: 1002},
		{name: "unknown opcode", bytes: [][]byte{wholeFrame(0x83, ping)}, code: 1002},
		{name: "continuation first", bytes: [][]byte{wholeFrame(0x80, ping)}, code: 1002},
		{name: "data inside a fragmented message", bytes: [][]byte{wholeFrame(0x01, ping[:4]), wholeFrame(0x81, ping)}, code: 1002},
	}
}

// TestHostileFrames runs every hostile frame case at once, each on a
// connection of its own, while two members relay signals: the members
// keep relaying within the freeze tests' bounds, every attacker gets its
// close code (or, stuck mid-frame, is dropped once it has completed no
// frame for PongWait), nothing sent after a close is handled, and
// Shutdown returns within its deadline with no goroutine left.
func TestHostileFrames(t *testing.T) { forModes(t, testHostileFrames) }

func testHostileFrames(t *testing.T, mode serverMode) {
	ts := newTestServer(t, hostileConfig(), mode)
	probe := watchdog(t, ts.hub, 5*time.Second)
	pair := relayingPair(ts)

	cases := hostileFrameCases()
	attackers := make([]*tclient, len(cases))
	for i, tc := range cases {
		c := ts.dial(fmt.Sprint("user=x", i))
		c.ws.SetPingHandler(func(string) error { return nil }) // its pongs would land inside its frames
		attackers[i] = c
		nc := c.ws.NetConn()
		_ = nc.SetWriteDeadline(time.Now().Add(wait))
		if tc.trickle {
			go trickle(nc, tc.bytes)
			continue
		}
		for _, p := range tc.bytes {
			if _, err := nc.Write(p); err != nil {
				break // the server may close before the last bytes
			}
		}
	}
	for i, tc := range cases {
		c := attackers[i]
		code := c.expectClose()
		if code == -1 {
			code = websocket.CloseAbnormalClosure // a reset: the trickle was still writing
		}
		tooBig, handled := false, false
		for len(c.msgs) > 0 {
			m := <-c.msgs
			tooBig = tooBig || (m.Type == proto.TypeError && strings.Contains(string(m.Data), string(proto.CodeTooLarge)))
			handled = handled || (m.Type == proto.TypePong && m.Ref == "after")
		}
		if code != tc.code || tooBig != tc.tooBig || handled {
			t.Errorf("%s: close code %d, too_large %v, handled after close %v; want %d, %v, false (%v)",
				tc.name, code, tooBig, handled, tc.code, tc.tooBig, c.closeErr)
		}
	}
	checkRelay(t, pair.finish(t))
	eventually(t, "the attackers' connections to end", func() bool { return ts.hub.Stats().Connections == 2 })
	shutdownWithin(t, ts, probe, 3*time.Second)
}

// trickle writes the bytes one at a time, every 50 ms (pacing an attack,
// not synchronising), until a write fails.
func trickle(nc net.Conn, bytes [][]byte) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for _, p := range bytes {
		for i := range p {
			<-tick.C
			if _, err := nc.Write(p[i : i+1]); err != nil {
				return
			}
		}
	}
}

// TestPingFloodAndSlowReader: in a busy room, one client sends pings
// back to back and never reads, and another reads its socket a byte at a
// time while a member sends it signals. Pongs replace each other, so the
// flood costs the server one pong at a time and no memory; the flooder is
// dropped once a pong write makes no progress for WriteWait, the slow
// reader once its queue is full or a write of it stalls, signals to it are
// refused meanwhile, and the other members keep relaying.
func TestPingFloodAndSlowReader(t *testing.T) { forModes(t, testPingFloodAndSlowReader) }

func testPingFloodAndSlowReader(t *testing.T, mode serverMode) {
	ts := newTestServer(t, freezeConfig(), mode)
	probe := watchdog(t, ts.hub, 5*time.Second)
	pair := relayingPair(ts)

	flooder := ts.dialRaw("user=flooder&sndbuf=4096", true)
	go func() {
		ping := wholeFrame(0x89, make([]byte, 125))
		nc := flooder.ws.NetConn()
		for {
			_ = nc.SetWriteDeadline(time.Now().Add(wait))
			if _, err := nc.Write(ping); err != nil {
				return // dropped
			}
		}
	}()

	slow := ts.dialRaw("user=slow&sndbuf=4096", true)
	slow.send(proto.Message{Type: proto.TypeJoin, ID: "1", Room: "lobby"})
	go func() {
		nc := slow.ws.NetConn()
		var one [1]byte
		tick := time.NewTicker(10 * time.Millisecond) // pacing the reader
		defer tick.Stop()
		for range tick.C {
			_ = nc.SetReadDeadline(time.Now().Add(wait))
			if _, err := nc.Read(one[:]); err != nil {
				return // dropped
			}
		}
	}()
	sender := ts.dial("user=sender")
	sender.join("lobby", "1")
	eventually(t, "the slow reader in the room", func() bool { return ts.hub.Stats().Members == 4 })
	target := peerIn(t, ts, "slow")
	pad := `{"pad":"` + fmt.Sprintf("%02000d", 0) + `"}`
	for i := 0; ts.hub.Stats().SlowConsumers < 2; i++ {
		if i > 20000 {
			t.Fatalf("not both dropped: %d slow consumers", ts.hub.Stats().SlowConsumers)
		}
		refused(t, sender, target, i, pad) // refused, unknown once dropped: either way no wait
	}
	checkRelay(t, pair.finish(t))
	shutdownWithin(t, ts, probe, 3*time.Second)
}

// TestResumeStorm: one user resumes its session over and over, each time
// over the connection still open (a takeover), and then sends a burst of
// resumes with one token at once, at its connection limit. The members
// keep relaying, exactly one of the burst resumes (the token is
// single-use), the user never holds more than its limit, and once it
// leaves, its connections, sessions and counts are gone.
func TestResumeStorm(t *testing.T) { forModes(t, testResumeStorm) }

func testResumeStorm(t *testing.T, mode serverMode) {
	cfg := hostileConfig()
	cfg.MaxConnsPerUser = 4
	ts := newTestServer(t, cfg, mode)
	probe := watchdog(t, ts.hub, 5*time.Second)
	pair := relayingPair(ts)
	c := ts.dial("user=x")
	c.join("lobby", "1")
	for i := range 50 {
		next := ts.dial("user=x&resume=" + c.welcome.ResumeToken)
		if !next.welcome.Resumed || next.peer() != c.peer() {
			t.Fatalf("resume %d: %+v", i, next.welcome)
		}
		c = next
	}
	// A burst of resumes with one token: one resumes, the others get new
	// sessions or, past the limit, close 4429.
	type outcome struct {
		ws      *websocket.Conn
		resumed bool
		code    int
	}
	const burst = 8
	results := make(chan outcome, burst)
	u := "ws" + strings.TrimPrefix(ts.srv.URL, "http") + "/ws?user=x&resume=" + c.welcome.ResumeToken
	for range burst {
		go func() {
			d := websocket.Dialer{Subprotocols: proto.Subprotocols, HandshakeTimeout: wait,
				TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
			ws, _, err := d.Dial(u, nil)
			if err != nil {
				results <- outcome{code: -1}
				return
			}
			_ = ws.SetReadDeadline(time.Now().Add(wait))
			var o outcome
			for o.ws = ws; ; {
				var m proto.Message
				if err := ws.ReadJSON(&m); err != nil {
					var ce *websocket.CloseError
					if errors.As(err, &ce) {
						o.code = ce.Code
					}
					break
				}
				if m.Type == proto.TypeWelcome {
					var w proto.Welcome
					_ = json.Unmarshal(m.Data, &w)
					o.resumed = w.Resumed
					break
				}
			}
			results <- o
		}()
	}
	resumed, closing := 0, make(chan *websocket.Conn, burst)
	for range burst {
		o := <-results
		switch {
		case o.resumed:
			resumed++
		case o.code != 0 && o.code != proto.CloseTooManyConnections:
			t.Errorf("a resume of the burst ended with %d", o.code)
		}
		closing <- o.ws
	}
	c.ws.Close() // taken over by the burst's resume already
	if resumed != 1 {
		t.Errorf("%d of %d resumes with one token resumed, want 1", resumed, burst)
	}
	if n, _ := ts.hub.UserConns("x"); n > cfg.MaxConnsPerUser {
		t.Errorf("the user holds %d connections, limit %d", n, cfg.MaxConnsPerUser)
	}
	for range burst {
		if o := <-closing; o != nil {
			o.Close()
		}
	}
	eventually(t, "the user's connections to end", func() bool {
		n, _ := ts.hub.UserConns("x")
		return n == 0 && ts.hub.Stats().Connections == 2
	})
	checkRelay(t, pair.finish(t))
	shutdownWithin(t, ts, probe, 3*time.Second)
}
