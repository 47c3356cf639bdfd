package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/gorilla/websocket"

	"github.com/khadga/khadga/proto"
)

// WebSocket timing, after the classic read/write pump.
const (
	writeWait = 10 * time.Second
	// pongWait is how long the connection may stay silent; the writer
	// pings well within it.
	pongWait = 60 * time.Second
	// maxIncoming caps one server message. Signals may carry up to
	// proto.MaxSignalData of data inside the envelope.
	maxIncoming = 2 * proto.MaxMessageSize
	// outQueue bounds messages waiting for the writer, across reconnects.
	outQueue = 512
)

// ErrQueueFull: the signaling send queue is full (the server is not
// reading fast enough, or the connection has been down for long).
var ErrQueueFull = errors.New("signaling send queue full")

// dialWS opens /ws and reads the welcome. A resume token goes in
// Sec-WebSocket-Protocol, not in the URL, which proxies log, when the
// welcome that gave it said the server reads it there (inProtocol).
func (c *Client) dialWS(ctx context.Context, resume string, inProtocol bool) (*websocket.Conn, proto.Welcome, error) {
	q := url.Values{}
	protocols := []string{proto.Subprotocol}
	switch {
	case resume != "" && inProtocol:
		protocols = append(protocols, "khadga.resume."+resume)
	case resume != "":
		q.Set("resume", resume)
	}
	if c.opts.noPresence {
		q.Set("presence", "0")
	}
	u, err := wsURL(c.server, q)
	if err != nil {
		return nil, proto.Welcome{}, err
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+c.Tokens().Access)
	d := websocket.Dialer{
		Subprotocols:     protocols,
		HandshakeTimeout: c.opts.dialTimeout,
		Proxy:            http.ProxyFromEnvironment,
		TLSClientConfig:  tlsConfigOf(c.opts.hc),
	}
	ws, resp, err := d.DialContext(ctx, u, h)
	if err != nil {
		if resp != nil {
			defer resp.Body.Close()
			return nil, proto.Welcome{}, fmt.Errorf("open websocket: %w", apiError(resp, readSmall(resp)))
		}
		return nil, proto.Welcome{}, fmt.Errorf("open websocket: %w", err)
	}
	if ws.Subprotocol() != proto.Subprotocol {
		ws.Close()
		return nil, proto.Welcome{}, fmt.Errorf("server chose subprotocol %q, want %q", ws.Subprotocol(), proto.Subprotocol)
	}
	ws.SetReadLimit(maxIncoming)
	_ = ws.SetReadDeadline(time.Now().Add(c.opts.dialTimeout))
	m, err := readMessage(ws)
	if err != nil {
		ws.Close()
		return nil, proto.Welcome{}, fmt.Errorf("read welcome: %w", err)
	}
	if m.Type == proto.TypeError {
		var pe proto.Error
		_ = m.DecodeData(&pe)
		ws.Close()
		return nil, proto.Welcome{}, fmt.Errorf("server refused the connection: %s: %s", pe.Code, pe.Message)
	}
	var w proto.Welcome
	if m.Type != proto.TypeWelcome {
		ws.Close()
		return nil, proto.Welcome{}, fmt.Errorf("first message is %q, want welcome", m.Type)
	}
	if err := m.DecodeData(&w); err != nil {
		ws.Close()
		return nil, proto.Welcome{}, fmt.Errorf("decode welcome: %w", err)
	}
	return ws, w, nil
}

func readSmall(resp *http.Response) []byte {
	b := make([]byte, 4096)
	n, _ := resp.Body.Read(b)
	return b[:n]
}

func readMessage(ws *websocket.Conn) (*proto.Message, error) {
	typ, b, err := ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	if typ != websocket.TextMessage {
		return nil, fmt.Errorf("unexpected websocket message type %d", typ)
	}
	return proto.Decode(b, maxIncoming)
}

// probeWait is how long the signaling connection has to show it is alive
// after a probe (see probeSignaling).
const probeWait = 2 * time.Second

// probeSignaling checks the signaling connection now rather than at the
// next ping: a peer connection dropped, and if the network changed (a new
// address, a new router), the WebSocket died with it, silently, and ICE
// restart offers and answers would go into it and be lost. The server
// must answer a ping, or send anything, within probeWait; otherwise the
// reader's deadline ends the connection, and the client reconnects and
// resumes at once. WriteControl and SetReadDeadline are safe beside the
// reader and the writer; the reader moves the deadline on with whatever
// arrives.
func (c *Client) probeSignaling() {
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	if ws == nil {
		return // reconnecting already
	}
	_ = ws.SetReadDeadline(time.Now().Add(probeWait))
	if err := ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
		c.log.Debug("signaling probe", slog.Any("err", err))
	}
}

// serve runs one connection: a reader that dispatches messages and a writer
// that drains the send queue and pings. It returns when either fails.
func (c *Client) serve(ws *websocket.Conn) error {
	c.mu.Lock()
	c.ws = ws
	c.mu.Unlock()
	readErr := make(chan error, 1)
	go func() { readErr <- c.readLoop(ws) }()
	werr := c.writeLoop(ws, readErr)
	ws.Close()
	rerr := <-readErr
	c.mu.Lock()
	c.ws = nil
	c.mu.Unlock()
	if werr != nil {
		return werr
	}
	return rerr
}

func (c *Client) readLoop(ws *websocket.Conn) error {
	_ = ws.SetReadDeadline(time.Now().Add(pongWait))
	ws.SetPongHandler(func(string) error { return ws.SetReadDeadline(time.Now().Add(pongWait)) })
	for {
		m, err := readMessage(ws)
		if err != nil {
			var pe *proto.ProtocolError
			if errors.As(err, &pe) {
				c.log.Warn("bad message from server", slog.Any("err", err))
				continue
			}
			return fmt.Errorf("read: %w", err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(pongWait))
		c.dispatch(m)
	}
}

// writeLoop is the only writer of ws.
func (c *Client) writeLoop(ws *websocket.Conn, readErr chan error) error {
	ping := time.NewTicker(c.opts.pingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.ctx.Done():
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			return nil
		case err := <-readErr:
			readErr <- err // let serve collect it
			return nil
		case <-ping.C:
			if err := ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		case m := <-c.out:
			b, err := m.Encode()
			if err != nil {
				c.log.Warn("encode message", slog.Any("err", err))
				continue
			}
			_ = ws.SetWriteDeadline(time.Now().Add(writeWait))
			if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
				return fmt.Errorf("write: %w", err)
			}
		}
	}
}

// send queues m for the writer without blocking.
func (c *Client) send(m *proto.Message) error {
	if err := c.signedOut.Load(); err != nil {
		return *err
	}
	select {
	case c.out <- m:
		return nil
	case <-c.ctx.Done():
		return ErrClosed
	default:
		return ErrQueueFull
	}
}

// backoff returns the wait before reconnection attempt n (0-based): it
// doubles from backoffMin up to backoffMax, with "full jitter" in its upper
// half so that many clients dropped at once do not return in step.
func (c *Client) backoff(n int) time.Duration {
	d := c.opts.backoffMin
	for i := 0; i < n && d < c.opts.backoffMax; i++ {
		d *= 2
	}
	d = min(d, c.opts.backoffMax)
	return d/2 + rand.N(d/2+1)
}

// tlsConfigOf returns the TLS settings of hc's transport (WithHTTPClient),
// so that the WebSocket trusts what the API calls trust (a private CA, say).
// Nil means the defaults.
func tlsConfigOf(hc *http.Client) *tls.Config {
	if hc == nil {
		return nil
	}
	if t, ok := hc.Transport.(*http.Transport); ok && t.TLSClientConfig != nil {
		return t.TLSClientConfig.Clone()
	}
	return nil
}
