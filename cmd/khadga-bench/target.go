//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// writeWait bounds every write, so that a stuck server fails the phase
// instead of hanging the bench.
const writeWait = 10 * time.Second

// Target names, as the report keys them.
const (
	// nameKhadga is the khadga server of every phase. Its connections
	// open the presence feed as the web app does (?presence=1) with the
	// plain client, and leave it off with the tuned one (whose own frame
	// reader wants a quiet socket in the relay phases).
	nameKhadga = "khadga"
	// nameKhadgaIdle is a khadga server of its own for the idle phase with
	// the presence feed the other way, so that both figures exist for each
	// client and its memory starts from a fresh process as the others' do.
	nameKhadgaIdle = "khadga-idle"
	namePeerJS     = "peerjs"
)

// target is one server under test: khadga or PeerJS.
type target interface {
	// pid is the server's process id, 0 when unknown.
	pid() int
	// dial opens and authenticates one connection; it returns after the
	// server's first message (welcome or OPEN).
	dial(ctx context.Context) (*benchConn, error)
	// pair makes a and b able to signal each other (khadga: both join
	// room). It runs before any reader goroutine, so it may read.
	pair(ctx context.Context, a, b *benchConn, room string) error
	// presence reports whether the server sends each connection the
	// presence feed: the idle phase then waits for every connection's
	// list before it settles.
	presence() bool
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
	ws   *websocket.Conn
	id   string // the peer id the server knows this connection by
	node int    // which node of a cluster it is on (0 otherwise)
	// tap, when set, gets each message the idle phase's reader reads, or
	// drops it when full: the scale run's load processes watch a
	// connection this way.
	tap   atomic.Pointer[chan []byte]
	plain bool // dialed by the plain client (see client.go)
	mu    sync.Mutex
	// renew is when the tuned client next moves the write deadline,
	// writeWait ahead when set: half-way, so that every write has at least
	// writeWait/2 and the timer is not reset for each signal. The plain
	// client sets it before every write, as ordinary clients do.
	renew time.Time
}

// write sends b as one text message. Several goroutines send on one
// connection (a relay peer's reader answers, the heartbeats tick), and
// gorilla allows one writer at a time.
func (c *benchConn) write(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); c.plain || now.After(c.renew) {
		if err := c.ws.SetWriteDeadline(now.Add(writeWait)); err != nil {
			return err
		}
		c.renew = now.Add(writeWait / 2)
	}
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// startTap starts copying what c's idle reader reads to the channel it
// returns.
func (c *benchConn) startTap() <-chan []byte {
	ch := make(chan []byte, 64)
	c.tap.Store(&ch)
	return ch
}

func (c *benchConn) stopTap() { c.tap.Store(nil) }

// shut closes the connection with a normal-closure frame, so that the
// server ends the session at once instead of keeping it for a resume.
func (c *benchConn) shut() {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	_ = c.ws.Close()
}

// errRetryLater is a dial that the server refused for now: 503 with
// Retry-After, as a node answers while its account store cannot be
// reached. A real client waits that long and tries again.
type errRetryLater struct{ after time.Duration }

func (e errRetryLater) Error() string { return "refused for now, retry after " + e.after.String() }

// retryAfter recognises such an answer.
func retryAfter(resp *http.Response) (errRetryLater, bool) {
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusServiceUnavailable || err != nil || secs < 0 {
		return errRetryLater{}, false
	}
	return errRetryLater{after: time.Duration(secs) * time.Second}, true
}

// dialWS opens url and explains a refused upgrade with the server's answer.
func dialWS(ctx context.Context, d *websocket.Dialer, url string, h http.Header) (*websocket.Conn, error) {
	ws, resp, err := d.DialContext(ctx, url, h)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if later, ok := retryAfter(resp); ok {
				err = fmt.Errorf("%w (%w)", err, later)
			}
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

// isClosed reports whether err is the end of a connection the bench closed
// or closed normally, rather than a drop by the server.
func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) ||
		websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway)
}

// errText names a write error for the report.
func errText(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	if errors.Is(err, net.ErrClosed) {
		return "closed"
	}
	return "broken"
}
