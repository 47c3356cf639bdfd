package signalingtest

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/internal/stacks"
	"github.com/khadga/khadga/proto"
)

// Timeout bounds every wait in these helpers. It is generous because CI
// machines are slow and shared; a passing test never waits for it.
const Timeout = 15 * time.Second

// Client is a raw protocol client: it reads every message into a channel so
// that tests can wait for the next one of a type with a timeout.
type Client struct {
	t       testing.TB
	Conn    *websocket.Conn
	Welcome proto.Welcome
	rooms   []string
	in      chan *proto.Message
	closed  chan struct{}
	err     error
}

// Connect opens a WebSocket with the access token and waits for welcome.
func (s *Server) Connect(t testing.TB, access string, query url.Values) *Client {
	t.Helper()
	return ConnectURL(t, s.WSURL, access, query)
}

// ConnectURL is Connect to the WebSocket endpoint wsURL of any khadga
// server, such as a `khadga serve` process.
func ConnectURL(t testing.TB, wsURL, access string, query url.Values) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	conn, resp, err := DialURL(ctx, wsURL, access, query)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial /ws: %v (HTTP %d)", err, status)
	}
	c := &Client{t: t, Conn: conn, in: make(chan *proto.Message, 1024), closed: make(chan struct{})}
	go c.readLoop()
	t.Cleanup(func() { c.Close() })
	w := c.Expect(proto.TypeWelcome)
	if err := json.Unmarshal(w.Data, &c.Welcome); err != nil {
		t.Fatalf("welcome data: %v", err)
	}
	return c
}

func (c *Client) readLoop() {
	defer close(c.closed)
	defer close(c.in)
	for {
		_, b, err := c.Conn.ReadMessage()
		if err != nil {
			c.err = err
			return
		}
		m, err := proto.Decode(b, 1<<20)
		if err != nil {
			c.err = err
			return
		}
		c.in <- m
	}
}

// Send writes a message.
func (c *Client) Send(m *proto.Message) {
	c.t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		c.t.Fatal(err)
	}
	c.SendRaw(b)
}

// SendRaw writes a text frame as is.
func (c *Client) SendRaw(b []byte) {
	c.t.Helper()
	c.Conn.SetWriteDeadline(time.Now().Add(Timeout))
	if err := c.Conn.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// Next returns the next message, or fails the test after Timeout.
func (c *Client) Next() *proto.Message {
	c.t.Helper()
	select {
	case m, ok := <-c.in:
		if !ok {
			c.t.Fatalf("connection closed while waiting: %v", c.err)
		}
		return m
	case <-time.After(Timeout):
		c.t.Fatalf("no message within %v\n%s", Timeout, stacks.Summary())
		return nil
	}
}

// NextWithin returns the next message, or false if none comes within d
// or the connection is closed. It never fails the test, so that a test
// can wait on several clients at once.
func (c *Client) NextWithin(d time.Duration) (*proto.Message, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case m, ok := <-c.in:
		return m, ok
	case <-t.C:
		return nil, false
	}
}

// Close leaves like a well-behaved client: a normal closure (1000) ends
// the session at once instead of keeping it for its resume window.
func (c *Client) Close() {
	deadline := time.Now().Add(time.Second)
	c.Conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), deadline)
	c.Conn.Close()
	<-c.closed
}

// Rooms lists the rooms this client joined with Join.
func (c *Client) Rooms() []string { return c.rooms }

// NextOrClosed returns the next message, or false once the connection is
// closed; it fails the test after Timeout.
func (c *Client) NextOrClosed() (*proto.Message, bool) {
	c.t.Helper()
	select {
	case m, ok := <-c.in:
		return m, ok
	case <-time.After(Timeout):
		c.t.Fatalf("no message within %v\n%s", Timeout, stacks.Summary())
		return nil, false
	}
}

// Expect skips presence messages and returns the next message, failing the
// test unless it has type typ.
func (c *Client) Expect(typ string) *proto.Message {
	c.t.Helper()
	for {
		m := c.Next()
		if m.Type == proto.TypePresence && typ != proto.TypePresence {
			continue
		}
		if m.Type != typ {
			c.t.Fatalf("got %s %s, want %s", m.Type, m.Data, typ)
		}
		return m
	}
}

// ExpectError waits for an error message and checks its code and ref.
func (c *Client) ExpectError(code proto.Code, ref string) proto.Error {
	c.t.Helper()
	m := c.Expect(proto.TypeError)
	var e proto.Error
	if err := json.Unmarshal(m.Data, &e); err != nil {
		c.t.Fatal(err)
	}
	if e.Code != code || m.Ref != ref {
		c.t.Fatalf("error %s (ref %q: %s), want %s ref %q", e.Code, m.Ref, e.Message, code, ref)
	}
	return e
}

// Join joins a room and returns the members already there.
func (c *Client) Join(room string) []proto.Member {
	c.t.Helper()
	c.Send(&proto.Message{Type: proto.TypeJoin, ID: "join-" + room, Room: room})
	m := c.Expect(proto.TypeJoined)
	c.rooms = append(c.rooms, room)
	var j proto.Joined
	if err := json.Unmarshal(m.Data, &j); err != nil {
		c.t.Fatal(err)
	}
	return j.Peers
}

// Closed waits until the server closes the connection and returns the
// close error (a *websocket.CloseError when the server sent a close frame).
func (c *Client) Closed() error {
	c.t.Helper()
	for {
		select {
		case _, ok := <-c.in:
			if !ok {
				return c.err
			}
		case <-time.After(Timeout):
			c.t.Fatalf("connection still open after %v\n%s", Timeout, stacks.Summary())
		}
	}
}

// CloseCode is the close code in err, or -1.
func CloseCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}
