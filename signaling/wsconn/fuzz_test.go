package wsconn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// FuzzReaderMatchesGorilla feeds the same client bytes, cut into reads at
// arbitrary points, to a Conn and to a gorilla/websocket server connection:
// both must deliver the same messages, end the same way (the client's
// close code, a protocol error, a message over the limit, or the end of the
// stream) and answer with the same close code, if any.
func FuzzReaderMatchesGorilla(f *testing.F) {
	frames := func(fs ...[]byte) []byte { return bytes.Join(fs, nil) }
	f.Add(frames(clientFrame(true, opText, []byte("hello"))), []byte{1})
	f.Add(frames(clientFrame(false, opText, []byte("he")), clientFrame(true, opPing, nil),
		clientFrame(true, opContinuation, []byte("llo"))), []byte{3, 1, 7})
	f.Add(frames(clientFrame(true, opContinuation, []byte("x"))), []byte{2})
	f.Add(frames(clientFrame(false, opText, []byte("a")), clientFrame(true, opText, []byte("b"))), []byte{5})
	f.Add([]byte{0x81, 0x02, 'h', 'i'}, []byte{1})                     // unmasked
	f.Add([]byte{0xc1, 0x80, 1, 2, 3, 4}, []byte{4})                   // RSV1
	f.Add([]byte{0x83, 0x80, 1, 2, 3, 4}, []byte{4})                   // opcode 3
	f.Add([]byte{0x89, 0xfe, 0, 200, 1, 2, 3, 4}, []byte{8})           // long ping
	f.Add([]byte{0x09, 0x80, 1, 2, 3, 4}, []byte{8})                   // fragmented ping
	f.Add([]byte{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0}, []byte{3})    // length with the top bit
	f.Add([]byte{0x81, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2}, []byte{9}) // over the limit
	f.Add(clientFrame(true, opText, bytes.Repeat([]byte("q"), 301)), []byte{200})
	f.Add(clientFrame(true, opClose, []byte{0x03, 0xe8, 'o', 'k'}), []byte{6})
	f.Add(clientFrame(true, opClose, []byte{0x03, 0xed}), []byte{6})       // 1005 is not sendable
	f.Add(clientFrame(true, opClose, []byte{0x03, 0xe8, 0xff}), []byte{6}) // bad UTF-8
	f.Add(clientFrame(true, opClose, []byte{7}), []byte{6})
	f.Add(frames(clientFrame(false, opBinary, bytes.Repeat([]byte("a"), 200)),
		clientFrame(true, opContinuation, bytes.Repeat([]byte("b"), 200))), []byte{50, 100})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		want := gorillaReads(t, data, cuts)
		if want.End == "too large" && want.Sent == "" {
			// gorilla refuses a length with its top bit set, or one that
			// overflows the message's size, as over the limit without
			// writing its 1009; wsconn writes it, as for any message
			// over the limit.
			want.Sent = "close 1009"
		}
		got := wsconnReads(t, data, cuts)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("input %x cut %v:\nwsconn  %+v\ngorilla %+v", data, cuts, got, want)
		}
	})
}

// fuzzLimit is the read limit of both sides: small, so that the fuzzer
// reaches it.
const fuzzLimit = 300

// outcome is what a server made of a client's bytes.
type outcome struct {
	Msgs []string // "t:..." or "b:..."
	End  string   // "close 1000", "protocol", "too large" or "eof"
	Sent string   // the close frame the server wrote: "close 1002", "close" (no code) or ""
}

func gorillaReads(t *testing.T, data, cuts []byte) outcome {
	nc := newScriptConn(data, cuts)
	ws, err := gorillaServer(nc)
	if err != nil {
		t.Fatalf("gorilla upgrade: %v", err)
	}
	ws.SetReadLimit(fuzzLimit)
	var out outcome
	for {
		mt, b, err := ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			switch {
			case errors.As(err, &ce) && ce.Code == websocket.CloseAbnormalClosure:
				out.End = "eof" // gorilla's name for a stream that ended mid-frame
			case errors.As(err, &ce):
				out.End = fmt.Sprintf("close %d", ce.Code)
			case errors.Is(err, websocket.ErrReadLimit):
				out.End = "too large"
			case nc.wroteClose(1002):
				out.End = "protocol"
			default:
				out.End = "eof"
			}
			out.Sent = nc.sentClose()
			return out
		}
		out.Msgs = append(out.Msgs, msgString(mt == websocket.TextMessage, b))
	}
}

func wsconnReads(t *testing.T, data, cuts []byte) outcome {
	nc := newScriptConn(data, cuts)
	cfg := Config{ReadLimit: fuzzLimit}.WithDefaults()
	c := New[msg](nc, &cfg)
	h := &fuzzHandler{}
	r := c.Serve(h)
	out := outcome{Msgs: h.msgs}
	var pe *ProtocolError
	switch {
	case r.ClientCode != 0:
		out.End = fmt.Sprintf("close %d", r.ClientCode)
	case errors.Is(r.Err, ErrTooLarge):
		out.End = "too large"
	case errors.As(r.Err, &pe):
		out.End = "protocol"
	default:
		out.End = "eof"
	}
	out.Sent = nc.sentClose()
	return out
}

// gorillaServer is gorilla/websocket's server side of nc, upgraded from a
// request that nc never sees (its answer goes to nc).
func gorillaServer(nc net.Conn) (*websocket.Conn, error) {
	req, _ := http.NewRequest("GET", "http://x/", nil)
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Version", "13")
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	return up.Upgrade(&hijacker{nc: nc}, req, nil)
}

func msgString(text bool, b []byte) string {
	if text {
		return "t:" + string(b)
	}
	return "b:" + string(b)
}

type fuzzHandler struct{ msgs []string }

func (h *fuzzHandler) Message(text bool, b []byte) { h.msgs = append(h.msgs, msgString(text, b)) }
func (h *fuzzHandler) TooLarge(int64)              {}

// scriptConn is a net.Conn whose reads return the script's bytes in the
// given cuts, then io.EOF; it records what is written.
type scriptConn struct {
	data, cuts []byte
	mu         sync.Mutex
	wrote      bytes.Buffer
}

func newScriptConn(data, cuts []byte) *scriptConn {
	return &scriptConn{data: data, cuts: cuts}
}

func (c *scriptConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.cuts) > 0 {
		n = max(int(c.cuts[0]), 1)
		c.cuts = c.cuts[1:]
	}
	n = copy(p, c.data[:min(n, len(c.data))])
	c.data = c.data[n:]
	return n, nil
}

func (c *scriptConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wrote.Write(p)
}

// wroteClose reports whether a close frame with code was written after the
// HTTP response.
func (c *scriptConn) wroteClose(code int) bool {
	return c.sentClose() == fmt.Sprintf("close %d", code)
}

// sentClose describes the first close frame written after the HTTP
// response: "close CODE", "close" for one without a code, or "" for none.
// The server's frames before it are control frames (pongs), so each
// length fits in the frame's second byte.
func (c *scriptConn) sentClose() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.wrote.Bytes()
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		b = b[i+4:]
	}
	for len(b) >= 2 {
		op, n := b[0]&0x0f, int(b[1]&0x7f)
		if len(b) < 2+n {
			return ""
		}
		if op == opClose {
			if n >= 2 {
				return fmt.Sprintf("close %d", int(b[2])<<8|int(b[3]))
			}
			return "close"
		}
		b = b[2+n:]
	}
	return ""
}

func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// hijacker is the http.ResponseWriter gorilla's Upgrade needs.
type hijacker struct {
	nc net.Conn
	h  http.Header
}

func (w *hijacker) Header() http.Header {
	if w.h == nil {
		w.h = http.Header{}
	}
	return w.h
}
func (w *hijacker) Write(b []byte) (int, error) { return len(b), nil }
func (w *hijacker) WriteHeader(int)             {}
func (w *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.nc, bufio.NewReadWriter(bufio.NewReader(w.nc), bufio.NewWriter(w.nc)), nil
}
