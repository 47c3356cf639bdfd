package client

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"sort"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/testlog"
)

// benchPair dials two clients to a fresh server, quietly.
func benchPair(b *testing.B, relay bool) (*testServer, *Client, *Client) {
	b.Helper()
	ts := startBenchServer(b, relay)
	var opts []Option
	if relay {
		opts = append(opts, WithRelayOnly())
	}
	mk := func(user string) *Client {
		ts.Register(b, user, testPassword)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		c, err := Dial(ctx, ts.URL, Credentials{Username: user, Password: testPassword},
			append([]Option{WithLogger(slog.New(slog.DiscardHandler)), WithSettingEngine(loopbackEngine()), WithoutPresence()}, opts...)...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return c
	}
	return ts, mk("alice"), mk("bob")
}

func startBenchServer(b *testing.B, withTURN bool) *testServer {
	b.Helper()
	ts := &testServer{logs: &testlog.Buffer{}}
	cfgLog := slog.New(slog.DiscardHandler)
	ts.Server = startQuiet(b, withTURN, cfgLog, ts)
	return ts
}

// benchConnected waits for a PeerConnected on r.
func benchConnected(b *testing.B, r *Room) {
	b.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case ev := <-r.Events():
			if _, ok := ev.(*PeerConnected); ok {
				return
			}
		case <-timer.C:
			b.Fatal("no PeerConnected")
		}
	}
}

// BenchmarkJoinToOpen measures the time from the second client's Join to
// the chat data channel being open on its side. Run with -benchtime=50x.
func BenchmarkJoinToOpen(b *testing.B) {
	for _, relay := range []bool{false, true} {
		name := map[bool]string{false: "direct", true: "relay"}[relay]
		b.Run(name, func(b *testing.B) {
			_, alice, bob := benchPair(b, relay)
			ctx := context.Background()
			var ds []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				room := fmt.Sprintf("bench%d", i)
				ra, err := alice.Join(ctx, room)
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				rb, err := bob.Join(ctx, room)
				if err != nil {
					b.Fatal(err)
				}
				benchConnected(b, rb)
				ds = append(ds, time.Since(start))
				benchConnected(b, ra)
				b.StopTimer()
				_ = rb.Leave(ctx)
				_ = ra.Leave(ctx)
				b.StartTimer()
			}
			sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
			b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(ds[len(ds)*95/100].Microseconds())/1000, "p95-ms")
		})
	}
}

// peerGCPercent is the collector setting khadga-peer runs with when GOGC
// is not set (cmd/khadga-peer/gc.go); the library itself never changes it.
const peerGCPercent = 400

// BenchmarkFileThroughput sends 64 MiB per iteration between two clients,
// direct and relayed, each with the collector as the process has it
// ("gogc=default": GOGC, or Go's 100) and as khadga-peer runs it
// ("gogc=400"). Pion allocates about 20 bytes per byte moved, so the
// collector's setting shows in the throughput. The in-process server and
// TURN relay run under the same setting, being in the same process. The
// sub-benchmark that runs second in a process has stalled more often, so
// compare the settings one per process ("-bench FileThroughput/direct/gogc=400$";
// docs/benchmarks.md).
func BenchmarkFileThroughput(b *testing.B) {
	for _, relay := range []bool{false, true} {
		name := map[bool]string{false: "direct", true: "relay"}[relay]
		b.Run(name, func(b *testing.B) {
			b.Run("gogc=default", func(b *testing.B) { benchFileThroughput(b, relay) })
			b.Run(fmt.Sprintf("gogc=%d", peerGCPercent), func(b *testing.B) {
				// How khadga-peer runs; restored for the benchmarks after.
				defer debug.SetGCPercent(debug.SetGCPercent(peerGCPercent))
				benchFileThroughput(b, relay)
			})
		})
	}
}

// benchFileThroughput sends b.N files of 64 MiB from one client to
// another, each checked against its SHA-256 by the receiver.
func benchFileThroughput(b *testing.B, relay bool) {
	const size = 64 << 20
	_, alice, bob := benchPair(b, relay)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ra, err := alice.Join(ctx, "files")
	if err != nil {
		b.Fatal(err)
	}
	rb, err := bob.Join(ctx, "files")
	if err != nil {
		b.Fatal(err)
	}
	benchConnected(b, ra)
	benchConnected(b, rb)
	b.SetBytes(size)
	gc0 := readGCStats()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st, err := ra.SendFile(ctx, bob.Self().Peer, "bench.bin", zeroReader{}, size)
		if err != nil {
			b.Fatal(err)
		}
		var f *IncomingFile
		for f == nil {
			if ev, ok := (<-rb.Events()).(*IncomingFile); ok {
				f = ev
			}
		}
		rt, err := f.Accept(io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		if err := rt.Wait(ctx); err != nil {
			b.Fatal(err)
		}
		if err := st.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	gc1 := readGCStats()
	b.ReportMetric(float64(gc1.cycles-gc0.cycles)/float64(b.N), "gc/op")
	b.ReportMetric((gc1.cpu-gc0.cpu)/float64(b.N), "gc-cpu-s/op")
}

// gcStats are the collector's totals for the process so far.
type gcStats struct {
	cycles uint64
	cpu    float64 // the runtime's estimate of CPU-seconds spent collecting
}

func readGCStats() gcStats {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	return gcStats{cycles: s[0].Value.Uint64(), cpu: s[1].Value.Float64()}
}

// zeroReader is an endless source of zeros.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
