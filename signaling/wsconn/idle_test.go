package wsconn

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestQuietReaderHandsOver: a reader waits for its connection's next
// bytes on a fresh goroutine (waitIdle, whose stack holds only the wait)
// before the first frame and after a quiet gap, keeps its goroutine while
// frames come close together, and the fresh goroutine goes on as the
// reader: later messages are handled and the connection ends as usual.
// What the handover saves is measured by the benchmarks (stack per idle
// connection: BenchmarkIdleConnMemory in package hub, and khadga-bench's
// idle phase), not here: the runtime's stack accounting is too coarse for
// a test.
func TestQuietReaderHandsOver(t *testing.T) {
	const n = 50
	const idle = 100 * time.Millisecond
	cfg := Config{IdleAfter: idle}.WithDefaults()
	got := make(chan string, 4*n)
	ended := make(chan Result[msg], n)
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := New[msg](ws.NetConn(), &cfg)
		c.Start(&handler{msgs: got}, func(r Result[msg]) { ended <- r })
	}))
	t.Cleanup(srv.Close)
	base := waiting.Load()
	waitFor := func(what string, want int64) {
		t.Helper()
		deadline := time.Now().Add(wait)
		for waiting.Load()-base != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d readers wait on a fresh goroutine, want %d", what, waiting.Load()-base, want)
			}
			time.Sleep(5 * time.Millisecond) // polling a count under a deadline
		}
	}

	clients := make([]*websocket.Conn, n)
	d := websocket.Dialer{HandshakeTimeout: wait}
	for i := range clients {
		ws, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = ws
	}
	waitFor("before the first frame", n)
	// send has every client send texts, and waits for all to be handled.
	send := func(texts ...string) {
		t.Helper()
		for _, ws := range clients {
			for _, text := range texts {
				if err := ws.WriteMessage(websocket.TextMessage, []byte(text)); err != nil {
					t.Fatal(err)
				}
			}
		}
		count := map[string]int{}
		for range n * len(texts) {
			select {
			case m := <-got:
				count[strings.TrimPrefix(m, "text:")]++
			case <-time.After(wait):
				t.Fatalf("%q did not reach every handler: %v", texts, count)
			}
		}
		for _, text := range texts {
			if count[text] != n {
				t.Fatalf("handlers got %v, want %d of each of %q", count, n, texts)
			}
		}
	}
	// Two frames at once: the gap between them is short, so each reader
	// keeps the goroutine that handled the second.
	send("a", "b")
	waitFor("after frames close together", 0)
	<-time.After(2 * idle) // the quiet gap the test is about, not a synchronisation
	send("after a gap")
	waitFor("after a quiet gap", n)
	send("to the fresh reader")

	for _, ws := range clients {
		_ = ws.Close()
	}
	for range clients {
		select {
		case <-ended:
		case <-time.After(wait):
			t.Fatal("a connection did not end after its client left")
		}
	}
	waitFor("after the connections ended", 0)
}
