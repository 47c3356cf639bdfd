package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/internal/rawio"
)

// writeWait bounds every write, so that a stuck server fails the phase
// instead of hanging the bench.
const writeWait = 10 * time.Second

// target is one server under test: khadga or PeerJS.
type target interface {
	// name is "khadga" or "peerjs".
	name() string
	// pid is the server's process id, 0 when unknown.
	pid() int
	// dial opens and authenticates one connection; it returns after the
	// server's first message (welcome or OPEN).
	dial(ctx context.Context) (*benchConn, error)
	// pair makes a and b able to signal each other (khadga: both join
	// room). It runs before any reader goroutine, so it may read.
	pair(ctx context.Context, a, b *benchConn, room string) error
	// heartbeat is the frame an idle connection sends every period.
	heartbeat() []byte
	// signalPrefix is the frame of a signal to peer dst, up to the start of
	// its payload object.
	signalPrefix(dst string) []byte
	// signalSuffix closes what signalPrefix opened.
	signalSuffix() []byte
	// close stops the server if the bench started it.
	close() error
}

// benchConn is one WebSocket connection of the load.
type benchConn struct {
	ws *websocket.Conn
	id string // the peer id the server knows this connection by
	mu sync.Mutex
	// renew is when the write deadline, writeWait ahead when set, is next
	// moved: half-way, so that every write has at least writeWait/2 and
	// the timer is not reset for each signal.
	renew time.Time
}

func (c *benchConn) write(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.After(c.renew) {
		if err := c.ws.SetWriteDeadline(now.Add(writeWait)); err != nil {
			return err
		}
		c.renew = now.Add(writeWait / 2)
	}
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// shut closes the connection with a normal-closure frame, so that the
// server ends the session at once instead of keeping it for a resume.
func (c *benchConn) shut() {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	_ = c.ws.Close()
}

// dialer is shared by all connections of a target. Small buffers keep the
// bench's own memory modest at 10,000 connections; a 1 KiB signal fits.
// Sockets use raw system calls (internal/rawio): the load client shares the
// two cores with the server it measures, so every microsecond it spends per
// signal is one the server cannot have.
func newDialer() *websocket.Dialer {
	return &websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return rawio.Wrap(c), nil
		},
		HandshakeTimeout: 30 * time.Second,
		ReadBufferSize:   2048,
		WriteBufferSize:  2048,
		WriteBufferPool:  &sync.Pool{},
	}
}

// dialWS opens url and explains a refused upgrade with the server's answer.
func dialWS(ctx context.Context, d *websocket.Dialer, url string, h http.Header) (*websocket.Conn, error) {
	ws, resp, err := d.DialContext(ctx, url, h)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			return nil, fmt.Errorf("dial %s: %s: %s: %w", redact(url), resp.Status, bytes.TrimSpace(body), err)
		}
		return nil, fmt.Errorf("dial %s: %w", redact(url), err)
	}
	return ws, nil
}

// redact drops the query, which may carry a token, from url.
func redact(url string) string {
	if i := bytes.IndexByte([]byte(url), '?'); i >= 0 {
		return url[:i] + "?…"
	}
	return url
}

// readJSON reads one message into v with a deadline.
func readJSON(ws *websocket.Conn, v any, d time.Duration) ([]byte, error) {
	if err := ws.SetReadDeadline(time.Now().Add(d)); err != nil {
		return nil, err
	}
	_, b, err := ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	if err := ws.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return b, fmt.Errorf("decode %.80q: %w", b, err)
	}
	return b, nil
}

// msgType returns the value of the first "type" field in a server frame
// without decoding it: both servers put type first, and the bench's own
// payload holds no "type" key. It falls back to a full decode.
func msgType(b []byte) string {
	const key = `"type":"`
	if i := bytes.Index(b, []byte(key)); i >= 0 {
		rest := b[i+len(key):]
		if j := bytes.IndexByte(rest, '"'); j >= 0 {
			return string(rest[:j])
		}
	}
	var m struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(b, &m)
	return m.Type
}

// The payload of every signal: a send timestamp, fixed width so that every
// signal has the same size, and padding up to -size bytes.
//
//	{"t":"0000000000123456789","pad":"xxxx…"}
const (
	stampKey   = `"t":"`
	stampWidth = 19
	padKey     = `","pad":"`
)

// payloadOverhead is the size of a payload without padding.
const payloadOverhead = len(`{`) + len(stampKey) + stampWidth + len(padKey) + len(`"}`)

// signalFrame builds the frames of one sender: prefix, payload, suffix. The
// stamp sits at a fixed offset, so that each send rewrites only it.
type signalFrame struct {
	buf      []byte
	stampOff int
}

func newSignalFrame(t target, dst string, size int) *signalFrame {
	var b []byte
	b = append(b, t.signalPrefix(dst)...)
	b = append(b, '{')
	b = append(b, stampKey...)
	off := len(b)
	b = append(b, bytes.Repeat([]byte{'0'}, stampWidth)...)
	b = append(b, padKey...)
	b = append(b, bytes.Repeat([]byte{'x'}, size-payloadOverhead)...)
	b = append(b, `"}`...)
	b = append(b, t.signalSuffix()...)
	return &signalFrame{buf: b, stampOff: off}
}

// stamp writes ns, zero-padded, into the frame and returns it.
func (f *signalFrame) stamp(ns int64) []byte {
	dst := f.buf[f.stampOff : f.stampOff+stampWidth]
	for i := stampWidth - 1; i >= 0; i-- {
		dst[i] = byte('0' + ns%10)
		ns /= 10
	}
	return f.buf
}

// readStamp finds the send timestamp in a received signal.
func readStamp(b []byte) (int64, bool) {
	i := bytes.Index(b, []byte(stampKey))
	if i < 0 || len(b) < i+len(stampKey)+stampWidth {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b[i+len(stampKey):i+len(stampKey)+stampWidth]), 10, 64)
	return n, err == nil
}
