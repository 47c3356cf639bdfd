package client

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/internal/testlog"
	"github.com/khadga/khadga/proto"
)

// testTimeout bounds every wait; generous for a slow, shared CI machine.
const testTimeout = 30 * time.Second

// testLogger writes to t.Log until the test ends, and is silent after:
// pion goroutines may still log while they shut down.
func testLogger(t testing.TB) *slog.Logger { return testlog.New(t, testLogLevel) }

// loopbackEngine lets pion use 127.0.0.1, the only address tests rely on.
func loopbackEngine() webrtc.SettingEngine {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	return se
}

// pipeHost wires a peer to another in the same process, passing signals
// through JSON as the server would, in order.
type pipeHost struct {
	to     chan wireSignal
	events chan Event
	mu     sync.Mutex
	sent   []wireSignal // every signal, in the order sent
}

func (h *pipeHost) sendSignal(_, _ string, s wireSignal) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.sent = append(h.sent, s)
	h.mu.Unlock()
	var s2 wireSignal
	if err := json.Unmarshal(b, &s2); err != nil {
		return err
	}
	select {
	case h.to <- s2:
		return nil
	default:
		return ErrQueueFull
	}
}

// probeSignaling: the pipe has no connection to check.
func (h *pipeHost) probeSignaling() {}

func (h *pipeHost) emit(_ string, ev Event) bool {
	select {
	case h.events <- ev:
		return true
	default:
		return false
	}
}

// newTestPair makes two peers, "pa" (polite) and "pb", in room "r",
// connected through pipeHosts.
func newTestPair(t *testing.T) (a, b *peer, ea, eb chan Event) {
	t.Helper()
	return newTestPairVia(t, func(h *pipeHost) peerHost { return h })
}

// newTestPairVia is newTestPair with a's signals sent through via(its
// pipeHost), which may lose or change them.
func newTestPairVia(t *testing.T, via func(*pipeHost) peerHost) (a, b *peer, ea, eb chan Event) {
	t.Helper()
	o := defaultOptions()
	o.log = testLogger(t)
	se := loopbackEngine()
	o.se = &se
	api, err := newAPI(o, &senderReports{})
	if err != nil {
		t.Fatal(err)
	}
	ha := &pipeHost{to: make(chan wireSignal, 1024), events: make(chan Event, 1024)}
	hb := &pipeHost{to: make(chan wireSignal, 1024), events: make(chan Event, 1024)}
	cfg := webrtc.Configuration{}
	a, err = newPeer(api, cfg, "pa", proto.Member{Peer: "pb", User: "bob", Role: proto.RoleUser}, via(ha), o)
	if err != nil {
		t.Fatal(err)
	}
	b, err = newPeer(api, cfg, "pb", proto.Member{Peer: "pa", User: "alice", Role: proto.RoleUser}, hb, o)
	if err != nil {
		t.Fatal(err)
	}
	a.addRoom("r")
	b.addRoom("r")
	ctx, cancel := context.WithCancel(context.Background())
	forward := func(from chan wireSignal, to *peer) {
		for {
			select {
			case s := <-from:
				to.handleSignal(s)
			case <-ctx.Done():
				return
			}
		}
	}
	go forward(ha.to, b)
	go forward(hb.to, a)
	t.Cleanup(func() {
		cancel()
		a.close()
		b.close()
	})
	return a, b, ha.events, hb.events
}

// waitEvent waits for the first event of type T that matches ok.
func waitEvent[T Event](t *testing.T, ch <-chan Event, ok func(T) bool) T {
	t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case ev, open := <-ch:
			if !open {
				t.Fatalf("event channel closed while waiting for %T", *new(T))
			}
			if e, is := ev.(T); is && (ok == nil || ok(e)) {
				return e
			}
		case <-timer.C:
			t.Fatalf("timed out waiting for %T", *new(T))
		}
	}
}

// testLogLevel is Info unless KHADGA_TEST_DEBUG is set.
var testLogLevel = func() slog.Level {
	if os.Getenv("KHADGA_TEST_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}()
