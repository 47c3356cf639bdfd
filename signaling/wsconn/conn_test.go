package wsconn

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestEchoAndCloseHandshake(t *testing.T) { forModes(t, testEchoAndCloseHandshake) }

func testEchoAndCloseHandshake(t *testing.T, md mode) {
	s := newServer(t, md, Config{}, echo)
	ws, h := s.dial()
	big := strings.Repeat("x", 40<<10) // larger than a pooled read buffer
	for _, m := range []string{"hello", "", big, "after big"} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
		expectMsg(t, h, "text:"+m)
		_ = ws.SetReadDeadline(time.Now().Add(wait))
		_, b, err := ws.ReadMessage()
		if err != nil || string(b) != m {
			t.Fatalf("echo of %.20q: %.20q, %v", m, b, err)
		}
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	expectMsg(t, h, "binary:\x01\x02")
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
	if err := ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	if code := closeCodeOf(t, ws); code != websocket.CloseNormalClosure {
		t.Errorf("server answered close with %d, want 1000", code)
	}
	r := s.result()
	if r.Err != nil || r.ClientCode != 1000 || r.ServerCode != 0 {
		t.Errorf("result %+v, want a clean close by the client with 1000", r)
	}
}

func TestPingGetsPong(t *testing.T) { forModes(t, testPingGetsPong) }

func testPingGetsPong(t *testing.T, md mode) {
	s := newServer(t, md, Config{}, echo)
	ws, _ := s.dial()
	pong := make(chan string, 1)
	ws.SetPongHandler(func(p string) error { pong <- p; return nil })
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	if err := ws.WriteControl(websocket.PingMessage, []byte("p1"), time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-pong:
		if p != "p1" {
			t.Errorf("pong %q, want p1", p)
		}
	case <-time.After(wait):
		t.Fatal("no pong")
	}
}

func TestFragmentsWithControlFramesBetween(t *testing.T) {
	forModes(t, testFragmentsWithControlFramesBetween)
}

func testFragmentsWithControlFramesBetween(t *testing.T, md mode) {
	s := newServer(t, md, Config{}, nil)
	nc, h := s.dialRaw(md)
	var b []byte
	b = append(b, clientFrame(false, opText, []byte("he"))...)
	b = append(b, clientFrame(true, opPing, []byte("x"))...)
	b = append(b, clientFrame(false, opContinuation, []byte("ll"))...)
	b = append(b, clientFrame(true, opContinuation, []byte("o"))...)
	b = append(b, clientFrame(true, opText, []byte("next"))...)
	// Byte by byte: every frame arrives split at every point.
	for i := range b {
		if _, err := nc.Write(b[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	expectMsg(t, h, "text:hello")
	expectMsg(t, h, "text:next")
}

func TestProtocolErrorCloses1002(t *testing.T) { forModes(t, testProtocolErrorCloses1002) }

func testProtocolErrorCloses1002(t *testing.T, md mode) {
	s := newServer(t, md, Config{}, nil)
	nc, _ := s.dialRaw(md)
	if _, err := nc.Write([]byte{0x81, 0x02, 'h', 'i'}); err != nil { // unmasked
		t.Fatal(err)
	}
	if code := rawCloseCode(t, nc); code != 1002 {
		t.Errorf("close code %d, want 1002", code)
	}
	r := s.result()
	var pe *ProtocolError
	if !errors.As(r.Err, &pe) || !strings.Contains(pe.Reason, "bad MASK") {
		t.Errorf("result error %v, want a protocol error about the mask", r.Err)
	}
}

// rawCloseCode reads frames from a raw client until the server's close.
func rawCloseCode(t testing.TB, nc io.Reader) int {
	t.Helper()
	if d, ok := nc.(interface{ SetReadDeadline(time.Time) error }); ok {
		_ = d.SetReadDeadline(time.Now().Add(wait))
	}
	all, _ := io.ReadAll(nc) // the server closes after its close frame
	for len(all) >= 2 {
		op, n := all[0]&0x0f, int(all[1]&0x7f)
		hl := 2
		if n == 126 {
			n, hl = int(all[2])<<8|int(all[3]), 4
		}
		if len(all) < hl+n {
			break
		}
		if op == opClose && n >= 2 {
			return int(all[hl])<<8 | int(all[hl+1])
		}
		all = all[hl+n:]
	}
	t.Fatalf("no close frame from the server")
	return 0
}

func TestTooLargeSaysWhyThenCloses1009(t *testing.T) { forModes(t, testTooLarge) }

func testTooLarge(t *testing.T, md mode) {
	s := newServer(t, md, Config{ReadLimit: 1000}, nil)
	ws, h := s.dial()
	h.onMsg = nil
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		_ = ws.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("y"), 1001))
	}()
	select {
	case n := <-h.tooLarge:
		if n != 1001 {
			t.Errorf("TooLarge(%d), want 1001", n)
		}
	case <-time.After(wait):
		t.Fatal("TooLarge never called")
	}
	if code := closeCodeOf(t, ws); code != websocket.CloseMessageTooBig {
		t.Errorf("close code %d, want 1009", code)
	}
	if r := s.result(); !errors.Is(r.Err, ErrTooLarge) || r.ServerCode != 1009 {
		t.Errorf("result %+v, want ErrTooLarge and server code 1009", r)
	}
	<-sent
}

func TestServerCloseWritesQueuedFirst(t *testing.T) { forModes(t, testServerClose) }

func testServerClose(t *testing.T, md mode) {
	s := newServer(t, md, Config{}, func(c *Conn[msg], _ bool, b []byte) {
		_ = c.Send(msg("last words"))
		c.Close(1012, "restart")
		if err := c.Send(msg("too late")); !errors.Is(err, ErrClosing) {
			panic("Send after Close: " + errString(err))
		}
	})
	ws, _ := s.dial()
	if err := ws.WriteMessage(websocket.TextMessage, []byte("go")); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(wait))
	if _, b, err := ws.ReadMessage(); err != nil || string(b) != "last words" {
		t.Fatalf("read %q, %v; want the message queued before Close", b, err)
	}
	_, _, err := ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 1012 || ce.Text != "restart" {
		t.Fatalf("read %v, want close 1012 restart", err)
	}
	// gorilla answered the close; the server ends cleanly.
	if r := s.result(); r.Err != nil || r.ServerCode != 1012 || r.ClientCode != 1012 {
		t.Errorf("result %+v, want a clean close started by the server", r)
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// A client that never answers our close is dropped after CloseGrace.
func TestCloseGraceBoundsTheWait(t *testing.T) { forModes(t, testCloseGrace) }

func testCloseGrace(t *testing.T, md mode) {
	s := newServer(t, md, Config{CloseGrace: 100 * time.Millisecond}, func(c *Conn[msg], _ bool, b []byte) {
		c.Close(1000, "")
	})
	nc, _ := s.dialRaw(md)
	if _, err := nc.Write(clientFrame(true, opText, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	r := s.result() // the raw client reads nothing and never answers
	if r.ServerCode != 1000 || r.ClientCode != 0 || r.Err == nil {
		t.Errorf("result %+v, want the server's close unanswered", r)
	}
}

// The freeze of issue 12, at the transport: a handler that kills and
// closes connections (its own among them) from inside Message, while
// holding a lock that other readers want, must not block anyone.
func TestKillAndCloseFromInsideHandlersNeverBlock(t *testing.T) {
	forModes(t, testKillFromHandler)
}

func testKillFromHandler(t *testing.T, md mode) {
	var mu sync.Mutex // a "hub lock"
	var all []*Conn[msg]
	s := newServer(t, md, Config{}, func(c *Conn[msg], _ bool, b []byte) {
		mu.Lock()
		defer mu.Unlock()
		for _, o := range all {
			switch string(b) {
			case "kill":
				o.Kill(errors.New("killed by a neighbour"))
			case "close":
				o.Close(1001, "")
			}
		}
	})
	var clients []*websocket.Conn
	for range 4 {
		ws, h := s.dial()
		mu.Lock()
		all = append(all, h.c)
		mu.Unlock()
		clients = append(clients, ws)
	}
	if err := clients[0].WriteMessage(websocket.TextMessage, []byte("kill")); err != nil {
		t.Fatal(err)
	}
	for range clients {
		if r := s.result(); r.Err == nil || !strings.Contains(r.Err.Error(), "killed by a neighbour") {
			t.Errorf("result error %v, want the kill's reason", r.Err)
		}
	}
}

// A client that stops reading: Offer refuses at the limits without
// changing anything, Send past twice the limits kills the connection, and
// nobody blocks.
func TestQueueLimitsOfferAndSend(t *testing.T) { forModes(t, testQueueLimits) }

func testQueueLimits(t *testing.T, md mode) {
	s := newServer(t, md, Config{QueueLen: 4, QueueBytes: 1 << 20, WriteWait: wait}, nil)
	_, h := s.dial() // the client never reads
	c := h.c
	big := blockWriter(t, c)
	for i := range 4 {
		if err := c.Offer(msg("offered")); err != nil {
			t.Fatalf("Offer %d of 4: %v", i+1, err)
		}
	}
	if err := c.Offer(msg("x")); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Offer at the limit: %v, want ErrQueueFull", err)
	}
	for i := range 4 {
		if err := c.Send(msg("sent")); err != nil {
			t.Fatalf("Send %d of 4 past the limit: %v", i+1, err)
		}
	}
	if err := c.Send(msg("sent")); !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("Send past twice the limit: %v, want ErrSlowConsumer", err)
	}
	// Unsent: the message the writer could not finish, then the 8 queued.
	r := s.result()
	if !errors.Is(r.Err, ErrSlowConsumer) || len(r.Unsent) != 9 || !bytes.Equal(r.Unsent[0], big) {
		t.Errorf("result error %v with %d unsent, want ErrSlowConsumer, the unfinished message and the 8 queued", r.Err, len(r.Unsent))
	}
}

// A write that makes no progress for WriteWait marks a slow consumer.
func TestWriteTimeoutIsASlowConsumer(t *testing.T) { forModes(t, testWriteTimeout) }

func testWriteTimeout(t *testing.T, md mode) {
	s := newServer(t, md, Config{WriteWait: 200 * time.Millisecond, QueueLen: 1 << 20, QueueBytes: 1 << 30}, nil)
	_, h := s.dial()
	smallSocket(t, h.c.NetConn())
	big := msg(bytes.Repeat([]byte("z"), 60<<10))
	for i := 0; i < 40; i++ { // 2.4 MB: more than the small socket holds
		if err := h.c.Offer(big); err != nil {
			break
		}
	}
	if r := s.result(); !errors.Is(r.Err, ErrSlowConsumer) {
		t.Errorf("result error %v, want ErrSlowConsumer", r.Err)
	}
}

// smallSocket shrinks the server side's send buffer, so that a client that
// does not read fills it after kilobytes, not megabytes.
func smallSocket(t *testing.T, nc net.Conn) {
	t.Helper()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if err := nc.(*net.TCPConn).SetWriteBuffer(4096); err != nil {
		t.Fatal(err)
	}
}

// blockWriter keeps c's writer in one write until its client reads: the
// server's send buffer is fixed small (the kernel would grow it as ACKs
// come in), and the writer takes a message far larger than it and the
// client's receive buffer (which grows only as the client reads). Only
// then is what c's queue holds up to the test. It returns the message.
func blockWriter(t *testing.T, c *Conn[msg]) []byte {
	t.Helper()
	smallSocket(t, c.NetConn())
	big := bytes.Repeat([]byte("z"), 8<<20)
	if err := c.Send(msg(big)); err != nil {
		t.Fatal(err)
	}
	taken := func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.q) == 0 && c.writing }
	eventually(t, "the writer to take the large message", taken)
	return big
}

// A client that sends pings (or requests) without reading the answers is
// held back by TCP, not dropped, while it keeps reading eventually.
func TestReaderHoldsBackWhileQueueIsFull(t *testing.T) { forModes(t, testHoldBack) }

func testHoldBack(t *testing.T, md mode) {
	const n = 300
	s := newServer(t, md, Config{QueueLen: 8}, echo)
	ws, _ := s.dial()
	sent := make(chan error, 1)
	go func() {
		for i := range n {
			if err := ws.WriteMessage(websocket.TextMessage, []byte{byte(i)}); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	_ = ws.SetReadDeadline(time.Now().Add(wait))
	for i := range n {
		_, b, err := ws.ReadMessage()
		if err != nil || len(b) != 1 || b[0] != byte(i) {
			t.Fatalf("answer %d: %v %v", i, b, err)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}

func TestTakeoverHandsOverTheQueue(t *testing.T) { forModes(t, testTakeover) }

func testTakeover(t *testing.T, md mode) {
	s := newServer(t, md, Config{}, nil)
	_, h := s.dial()
	big := blockWriter(t, h.c)
	for _, m := range []string{"a", "b", "c"} {
		if err := h.c.Send(msg(m)); err != nil {
			t.Fatal(err)
		}
	}
	got := h.c.Takeover(errors.New("resumed elsewhere"))
	if len(got) != 3 || string(got[0]) != "a" || string(got[2]) != "c" {
		t.Fatalf("Takeover returned %q, want the 3 queued in order", got)
	}
	// The message the writer had taken and could not finish comes back in
	// Unsent, for the hub to report to its sender: handed to the new
	// connection after the queue, it would arrive out of order.
	r := s.result()
	if len(r.Unsent) != 1 || !bytes.Equal(r.Unsent[0], big) || r.Err == nil || r.Err.Error() != "resumed elsewhere" {
		t.Errorf("result %v with %d unsent, want the takeover's reason and the unfinished message", r.Err, len(r.Unsent))
	}
}

// An idle connection holds no read buffer: a read buffer is borrowed only
// while bytes are being handled. Checked by the pool's content: buffers
// come back after each burst.
func TestIdleConnectionReturnsItsReadBuffer(t *testing.T) { forModes(t, testIdleBuffer) }

func testIdleBuffer(t *testing.T, md mode) {
	s := newServer(t, md, Config{}, echo)
	ws, _ := s.dial()
	if err := ws.WriteMessage(websocket.TextMessage, []byte("a")); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(wait))
	if _, _, err := ws.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the idle connection to return its read buffer", func() bool { return borrowed.Load() == 0 })
}

// The writer lingers after a batch, so that the next message on a busy
// connection needs no new goroutine, and exits once the connection has
// been quiet for writerLinger, so that an idle connection holds none.
func TestWriterLingersThenExits(t *testing.T) { forModes(t, testWriterLingers) }

func testWriterLingers(t *testing.T, md mode) {
	s := newServer(t, md, Config{}, echo)
	ws, h := s.dial()
	writer := func() (running bool, starts int) {
		h.c.mu.Lock()
		defer h.c.mu.Unlock()
		return h.c.writing, h.c.writerStarts
	}
	roundTrip := func(text string) {
		t.Helper()
		if err := ws.WriteMessage(websocket.TextMessage, []byte(text)); err != nil {
			t.Fatal(err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(wait))
		if _, b, err := ws.ReadMessage(); err != nil || string(b) != text {
			t.Fatalf("echo of %q: %q, %v", text, b, err)
		}
	}
	for i := range 20 {
		roundTrip(fmt.Sprint("m", i)) // each well within writerLinger of the one before
	}
	// One writer, or a few if the loaded machine stalled a round trip
	// past writerLinger; a writer per batch would be 20.
	if _, starts := writer(); starts > 10 {
		t.Errorf("20 echoes in a row started %d writers; want 1", starts)
	}
	eventually(t, "the writer of a quiet connection to exit", func() bool { running, _ := writer(); return !running })
	_, before := writer()
	roundTrip("after")
	if _, starts := writer(); starts != before+1 {
		t.Errorf("an echo after the writer exited started %d writers; want 1", starts-before)
	}
}

// When the client's close frame arrives, what waits in the queue is not
// written (a browser drops every message that comes after its close()):
// it comes back in Result.Unsent for a resumed session, and only the
// batch the writer was already writing goes out before the close answer.
func TestClientCloseKeepsTheQueue(t *testing.T) { forModes(t, testClientCloseKeeps) }

func testClientCloseKeeps(t *testing.T, md mode) {
	s := newServer(t, md, Config{QueueLen: 64, QueueBytes: 64 << 20}, nil)
	ws, h := s.dial()
	big := blockWriter(t, h.c)
	for _, m := range []string{"a", "b", "c"} {
		if err := h.c.Send(msg(m)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "no pong"), time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the server to read the close", func() bool { h.c.mu.Lock(); defer h.c.mu.Unlock(); return h.c.state != stateOpen })

	_ = ws.SetReadDeadline(time.Now().Add(wait))
	if _, b, err := ws.ReadMessage(); err != nil || len(b) != len(big) {
		t.Fatalf("read %d bytes, %v; want the big message that was being written", len(b), err)
	}
	_, b, err := ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4000 {
		t.Fatalf("read %q, %v; want the close answer (4000) next", b, err)
	}
	r := s.result()
	var unsent []string
	for _, m := range r.Unsent {
		unsent = append(unsent, string(m))
	}
	if strings.Join(unsent, ",") != "a,b,c" || r.ClientCode != 4000 {
		t.Errorf("result: client code %d, unsent %q; want 4000 and a,b,c", r.ClientCode, unsent)
	}
}

type ignoreMessages struct{}

func (ignoreMessages) Message(bool, []byte) {}
func (ignoreMessages) TooLarge(int64)       {}

// TestInFlightBatchIsUnsent: messages the writer took from the queue but
// did not write whole when the socket failed come back in Result.Unsent,
// ahead of those queued after them. They used to be dropped with the
// batch: the hub could neither keep them for a resume nor tell their
// senders.
func TestInFlightBatchIsUnsent(t *testing.T) {
	srv, cli := net.Pipe() // a write waits until the client reads, which it never does
	cfg := Config{}.WithDefaults()
	cfg.portable = true
	c := New[msg](srv, &cfg)
	res := make(chan Result[msg], 1)
	c.Start(ignoreMessages{}, func(r Result[msg]) { res <- r })
	if err := c.Send(msg("A")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the writer to take A", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.q) == 0 && c.writing
	})
	if err := c.Send(msg("B")); err != nil {
		t.Fatal(err)
	}
	_ = cli.Close() // the socket fails: A's write ends with none of it written
	var r Result[msg]
	select {
	case r = <-res:
	case <-time.After(wait):
		t.Fatal("no result")
	}
	var unsent []string
	for _, m := range r.Unsent {
		unsent = append(unsent, string(m))
	}
	if len(unsent) != 2 || unsent[0] != "A" || unsent[1] != "B" {
		t.Fatalf("Result.Unsent %q, want [A B]: the message in flight, then the queued one", unsent)
	}
}

func TestWholeFrames(t *testing.T) {
	b := batch[msg]{hasPong: true, pong: []byte("p"), msgs: []msg{msg("aa"), msg(strings.Repeat("x", 200)), msg("c")}}
	// pong 3 bytes, "aa" 4, the 200-byte one 204, "c" 3: ends at 3, 7, 211, 214.
	for _, c := range []struct{ written, want int }{{0, 0}, {6, 0}, {7, 1}, {210, 1}, {211, 2}, {213, 2}, {214, 3}} {
		if got := wholeFrames(&b, c.written); got != c.want {
			t.Errorf("wholeFrames after %d bytes = %d, want %d", c.written, got, c.want)
		}
	}
}

// TestCloseAfterAFailedWrite: a client's close that comes after a failed
// write put its unfinished messages back keeps them ahead of the queue;
// it used to replace them with the queue.
func TestCloseAfterAFailedWrite(t *testing.T) {
	srv, cli := net.Pipe()
	defer cli.Close()
	cfg := Config{}.WithDefaults()
	c := New[msg](srv, &cfg)
	c.keepUnsent([]msg{msg("unfinished")})
	c.mu.Lock()
	c.q = append(c.q, msg("queued")) // as queued after the batch, with no writer to take it
	c.mu.Unlock()
	c.answerClose(1000)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.kept) != 2 || string(c.kept[0]) != "unfinished" || string(c.kept[1]) != "queued" {
		t.Fatalf("kept %q, want [unfinished queued]", c.kept)
	}
}

// trickle is a source that hands out data a few bytes a read, then io.EOF.
type trickle struct {
	data []byte
	per  int
}

func (s *trickle) await() (*[]byte, int, error) { panic("not used") }

func (s *trickle) read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.data[:min(len(s.data), s.per, len(p))])
	s.data = s.data[n:]
	return n, nil
}

// TestLargeFrameBufferGrowsWithItsBytes: the buffer for a frame larger
// than a pooled one grows as the frame's bytes come, not to the size its
// header names: a header and a trickle held 64 KiB (128 with fragments)
// per connection for as long as the client liked.
func TestLargeFrameBufferGrowsWithItsBytes(t *testing.T) {
	const size = 64 << 10
	payload := bytes.Repeat([]byte("y"), size)
	rb := readBuf{bp: getReadBuf()}
	defer rb.release()
	src := &trickle{data: payload[:100], per: 10}
	if err := rb.ensure(src, size); err == nil {
		t.Fatal("ensure had all of a frame whose bytes never came")
	}
	if n := len(*rb.bp); n != readBufSize {
		t.Fatalf("100 bytes of a %d-byte frame hold a %d-byte buffer, want the pooled %d", size, n, readBufSize)
	}
	rb.release()
	rb = readBuf{bp: getReadBuf()}
	src = &trickle{data: payload, per: 3000}
	if err := rb.ensure(src, size); err != nil {
		t.Fatal(err)
	}
	if got := (*rb.bp)[rb.r : rb.r+size]; !bytes.Equal(got, payload) {
		t.Fatal("the frame's bytes came out changed")
	}
}
