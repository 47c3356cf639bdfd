package wsconn

import (
	"bytes"
	"testing"
)

// BenchmarkRead compares the reader with gorilla/websocket's on the same
// bytes: a stream of masked 1 KiB text frames (a relayed signal's size),
// from a connection that hands over up to a buffer's worth per read, so
// that only the frame code differs. docs/benchmarks.md records what it
// shows: why wsconn keeps its own reader rather than gorilla's.
//
//	go test -run '^$' -bench Read -benchmem ./signaling/wsconn
func BenchmarkRead(b *testing.B) {
	const frames = 1000
	payload := append([]byte(`{"type":"signal","to":"0123456789abcdef","data":`), bytes.Repeat([]byte("x"), 1024-48-1)...)
	payload = append(payload, '}')
	stream := bytes.Repeat(clientFrame(true, opText, payload), frames)
	b.Run("wsconn", func(b *testing.B) {
		b.SetBytes(int64(len(stream)))
		for b.Loop() {
			cfg := Config{ReadLimit: 64 << 10}.WithDefaults()
			h := &countHandler{}
			New[msg](newScriptConn(stream, nil), &cfg).Serve(h)
			if h.n != frames {
				b.Fatalf("read %d messages, want %d", h.n, frames)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/msg")
	})
	b.Run("gorilla", func(b *testing.B) {
		b.SetBytes(int64(len(stream)))
		for b.Loop() {
			ws, err := gorillaServer(newScriptConn(stream, nil))
			if err != nil {
				b.Fatal(err)
			}
			ws.SetReadLimit(64 << 10)
			n := 0
			for {
				// NextReader and a reused buffer, as a careful server
				// would; ReadMessage would allocate each message.
				_, r, err := ws.NextReader()
				if err != nil {
					break
				}
				if _, err := buf.ReadFrom(r); err != nil {
					b.Fatal(err)
				}
				buf.Reset()
				n++
			}
			if n != frames {
				b.Fatalf("read %d messages, want %d", n, frames)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/msg")
	})
}

var buf bytes.Buffer

type countHandler struct{ n int }

func (h *countHandler) Message(bool, []byte) { h.n++ }
func (h *countHandler) TooLarge(int64)       {}
