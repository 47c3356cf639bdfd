package hub

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"
)

// rawDial opens a WebSocket with a hand-written handshake and keeps only the
// socket: no goroutine and no buffers on the client side, so that the
// memory measured in this process is the server's.
func rawDial(tb testing.TB, ts *testServer, query string) net.Conn {
	tb.Helper()
	addr := ts.srv.Listener.Addr().String()
	var c net.Conn
	var err error
	if ts.tls {
		c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		tb.Fatal(err)
	}
	fmt.Fprintf(c, "GET /ws?%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: khadga.v1\r\n\r\n", query, addr)
	br := bufio.NewReaderSize(c, 256)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			tb.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	return c
}

// BenchmarkIdleConnMemory reports the heap and stack the server holds per
// idle authenticated connection (welcome sent, no presence), measured
// in-process after a GC. The benchmark tool measures RSS in a separate
// process; this figure is the Go-visible part of it.
func BenchmarkIdleConnMemory(b *testing.B) {
	for _, md := range []serverMode{{}, {tls: true}} {
		b.Run(md.String(), func(b *testing.B) { benchIdle(b, md, false, false) })
		// As the benchmark tool's clients do: one heartbeat each, then idle.
		b.Run(md.String()+"+heartbeat", func(b *testing.B) { benchIdle(b, md, true, false) })
		// And with the presence feed, as the web app opens it.
		b.Run(md.String()+"+heartbeat+presence", func(b *testing.B) { benchIdle(b, md, true, true) })
	}
}

// heartbeat is a masked text frame holding {"type":"ping","id":"1"}; the
// all-zero masking key leaves the payload as it is.
var heartbeat = append([]byte{0x81, 0x80 | 24, 0, 0, 0, 0}, `{"type":"ping","id":"1"}`...)

func benchIdle(b *testing.B, mode serverMode, beat, presence bool) {
	const n = 2000
	for range b.N {
		ts := newTestServer(b, Config{Logger: slog.New(slog.DiscardHandler)}, mode)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		conns := make([]net.Conn, 0, n)
		for i := range n {
			conns = append(conns, rawDial(b, ts, fmt.Sprintf("user=u%d&presence=%d", i, map[bool]int{true: 1}[presence])))
		}
		eventually(b, "all connections served", func() bool { return ts.hub.Stats().Connections == n })
		if beat {
			for _, c := range conns {
				if _, err := c.Write(heartbeat); err != nil {
					b.Fatal(err)
				}
			}
		}
		eventually(b, "writers to finish", func() bool {
			return runtime.NumGoroutine()-g0 <= n+5
		})
		time.Sleep(100 * time.Millisecond) // settle for measurement only, not synchronisation
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap := float64(after.HeapInuse) - float64(before.HeapInuse)
		stack := float64(after.StackInuse) - float64(before.StackInuse)
		b.ReportMetric(heap/n, "heap-B/conn")
		b.ReportMetric(stack/n, "stack-B/conn")
		b.ReportMetric((heap+stack)/n, "B/conn")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/n, "goroutines/conn")
		if f := os.Getenv("HUB_HEAP_PROFILE"); f != "" {
			if w, err := os.Create(f); err == nil {
				_ = pprof.WriteHeapProfile(w)
				_ = w.Close()
			}
		}
		for _, c := range conns {
			_ = c.Close()
		}
	}
}

// BenchmarkOpen opens connections from 50 concurrent dialers (raw
// handshakes, no client goroutines), and reports
// connections per second until each is served.
func BenchmarkOpen(b *testing.B) {
	ts := newTestServer(b, Config{Logger: slog.New(slog.DiscardHandler), ResumeWindow: time.Second})
	b.SetParallelism(25) // 25 x GOMAXPROCS(2) = 50 dialers
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var conns []net.Conn
		for pb.Next() {
			conns = append(conns, rawDial(b, ts, "user=u"))
		}
		for _, c := range conns {
			_ = c.Close()
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
}
