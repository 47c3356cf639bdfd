package hub

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/proto"
)

// benchConn dials, joins room and returns the socket and its peer id. It
// reads raw frames so that the client costs as little as possible.
func benchConn(b *testing.B, ts *testServer, user, room string) (*websocket.Conn, string) {
	b.Helper()
	d := websocket.Dialer{Subprotocols: proto.Subprotocols, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	ws, _, err := d.Dial("ws"+strings.TrimPrefix(ts.srv.URL, "http")+"/ws?user="+user, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ws.Close() })
	var w struct{ Data proto.Welcome }
	if err := ws.ReadJSON(&w); err != nil {
		b.Fatal(err)
	}
	if err := ws.WriteJSON(proto.Message{Type: proto.TypeJoin, ID: "j", Room: room}); err != nil {
		b.Fatal(err)
	}
	for {
		var m proto.Message
		if err := ws.ReadJSON(&m); err != nil {
			b.Fatal(err)
		}
		if m.Type == proto.TypeJoined {
			return ws, w.Data.Peer
		}
	}
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRelay relays 1 KiB signals over real WebSocket connections on
// loopback, from one peer to another in each pair, as fast as possible with
// at most 32 signals in flight per pair. Allocations include the clients'
// (which read raw frames and decode nothing).
func BenchmarkRelay(b *testing.B) {
	for _, md := range []serverMode{{}, {tls: true}} {
		for _, pairs := range []int{1, 20, 200} {
			b.Run(fmt.Sprintf("%s/pairs=%d", md, pairs), func(b *testing.B) { benchRelayMode(b, pairs, md, 0) })
		}
	}
}

// BenchmarkRelayRate relays 1 KiB signals between 200 pairs at a fixed
// 10,000 signals/s in all, for latency at a moderate load.
func BenchmarkRelayRate(b *testing.B) {
	for _, md := range []serverMode{{}, {tls: true}} {
		b.Run(md.String(), func(b *testing.B) { benchRelayMode(b, 200, md, 10000) })
	}
}

func benchRelayMode(b *testing.B, pairs int, mode serverMode, rate float64) {
	const window = 32
	ts := newTestServer(b, Config{Logger: slog.New(slog.DiscardHandler), MessageRate: 1e9, MessageBurst: 1 << 30,
		SignalBytesRate: 1 << 30, SignalBurstBytes: 1 << 30,
		MaxConnsPerUser: 2 * pairs}, mode) // two users stand for a user per connection
	type pair struct {
		tx, rx *websocket.Conn
		msg    []byte
		lat    []time.Duration
	}
	ps := make([]*pair, pairs)
	data := `{"candidate":{"candidate":"` + strings.Repeat("a", 1000) + `"}}`
	for i := range ps {
		room := fmt.Sprintf("r%d", i)
		rx, rxPeer := benchConn(b, ts, "rx", room)
		tx, _ := benchConn(b, ts, "tx", room)
		// rx sees peer-joined; drain it before timing starts.
		if _, _, err := rx.ReadMessage(); err != nil {
			b.Fatal(err)
		}
		msg, _ := json.Marshal(proto.Message{Type: proto.TypeSignal, ID: "s", To: rxPeer, Data: json.RawMessage(data)})
		ps[i] = &pair{tx: tx, rx: rx, msg: msg}
	}
	b.SetBytes(int64(len(ps[0].msg)))
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, p := range ps {
		n := b.N / pairs
		if i < b.N%pairs {
			n++
		}
		p.lat = make([]time.Duration, 0, n)
		// sent holds the send times of the signals in flight, in order; its
		// capacity is the window.
		sent := make(chan time.Time, window)
		wg.Add(2)
		go func() {
			defer wg.Done()
			var tick *time.Ticker
			if rate > 0 {
				tick = time.NewTicker(time.Duration(float64(pairs) / rate * float64(time.Second)))
				defer tick.Stop()
			}
			for range n {
				if tick != nil {
					<-tick.C
				}
				sent <- time.Now()
				if err := p.tx.WriteMessage(websocket.TextMessage, p.msg); err != nil {
					b.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range n {
				_, r, err := p.rx.NextReader()
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, r)
				p.lat = append(p.lat, time.Since(<-sent))
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signals/s")
	// CPU per signal (server and clients, user and system) is steadier than
	// wall time on a shared machine.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/signal")
	var all []time.Duration
	for _, p := range ps {
		all = append(all, p.lat...)
	}
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2])/float64(time.Millisecond), "p50-ms")
		b.ReportMetric(float64(all[len(all)*99/100])/float64(time.Millisecond), "p99-ms")
	}
	// The counter moves just after the write, so the last may lag a little.
	eventually(b, "every signal counted", func() bool { return ts.hub.Stats().SignalsRelayed == uint64(b.N) })
}
