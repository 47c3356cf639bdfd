package client

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"testing"
	"time"
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
	ts := &testServer{logs: &syncBuffer{}}
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

// BenchmarkFileThroughput sends 64 MiB per iteration between two clients.
func BenchmarkFileThroughput(b *testing.B) {
	const size = 64 << 20
	for _, relay := range []bool{false, true} {
		name := map[bool]string{false: "direct", true: "relay"}[relay]
		b.Run(name, func(b *testing.B) {
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
		})
	}
}

// zeroReader is an endless source of zeros.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
