package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/internal/testlog"
	"github.com/khadga/khadga/signaling/hub"
)

// What a node tells on a topic reaches every other node that listens to
// it, in order, and never the teller itself; news over 4 KiB is refused
// by the teller and dropped by a listener; topics are kept apart.
func TestTellReachesTheOthers(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	heard := map[string]chan string{}
	nodes := map[string]*Node{}
	for _, name := range []string{"a", "b", "c"} {
		ch := make(chan string, 16)
		heard[name] = ch
		cfg := fastConfig()
		cfg.NodeID, cfg.Logger = name, testlog.New(t, 0).With("node", name)
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		n, err := New(ctx, cfg, natstest.Connect(t, urls))
		if err != nil {
			t.Fatal(err)
		}
		n.Listen("limits", func(data []byte) { ch <- string(data) })
		h, err := hub.New(hub.Config{Logger: cfg.Logger, Delivery: n})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(ctx, h); err != nil {
			t.Fatal(err)
		}
		cancel()
		t.Cleanup(n.Close)
		nodes[name] = n
	}
	if !nodes["a"].Tell("limits", []byte("one")) || !nodes["a"].Tell("limits", []byte("two")) {
		t.Fatal("Tell refused small news")
	}
	if nodes["a"].Tell("limits", []byte(strings.Repeat("x", maxTell+1))) {
		t.Error("Tell took news over 4 KiB")
	}
	if nodes["a"].Tell("bad.topic", []byte("x")) {
		t.Error("Tell took a topic that is not one subject token")
	}
	nodes["a"].Tell("other", []byte("not for limits"))
	for _, name := range []string{"b", "c"} {
		for _, want := range []string{"one", "two"} {
			select {
			case got := <-heard[name]:
				if got != want {
					t.Fatalf("node %s heard %q, want %q", name, got, want)
				}
			case <-time.After(wait):
				t.Fatalf("node %s did not hear %q", name, want)
			}
		}
	}
	// A raw publish over the bound, as a foreign client of the same
	// NATS could send, is dropped; what b tells next still comes.
	if err := nodes["b"].nc.Publish(nodes["b"].subject("tell", "limits", "x"), make([]byte, maxTell+1)); err != nil {
		t.Fatal(err)
	}
	nodes["b"].Tell("limits", []byte("three"))
	select {
	case got := <-heard["c"]:
		if got != "three" {
			t.Fatalf("node c heard %q after the oversized news, want three", got)
		}
	case <-time.After(wait):
		t.Fatal("node c did not hear three")
	}
	// a heard b's, and never its own.
	select {
	case got := <-heard["a"]:
		if got != "three" {
			t.Fatalf("node a heard %q, want only b's three", got)
		}
	case <-time.After(wait):
		t.Fatal("node a did not hear b's news")
	}
	if len(heard["a"]) != 0 || len(heard["b"]) != 0 || len(heard["c"]) != 0 {
		t.Errorf("more news than told: a %d, b %d, c %d", len(heard["a"]), len(heard["b"]), len(heard["c"]))
	}
}
