package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/store"
)

// watchWait bounds how long a change may take to reach a watcher.
const watchWait = 10 * time.Second

// watching runs watch until the test ends and checks that it returns when
// its context does.
func watching(t *testing.T, watch func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(watchWait):
			t.Error("a watch did not end with its context")
		}
	})
}

func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(watchWait):
		t.Fatalf("%s: nothing within %v", what, watchWait)
		panic("unreachable")
	}
}

// testWatchSecret: the watcher gets the secret's value at once and, where
// other nodes exist, the value another node writes.
func testWatchSecret(t *testing.T, c Config) {
	s, o := open(t, c, Limits{})
	if _, err := s.UpdateSecret("turn", func([]byte) ([]byte, error) { return []byte("v1"), nil }); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 16)
	watching(t, func(ctx context.Context) { s.WatchSecret(ctx, "turn", func(v []byte) { got <- string(v) }) })
	if v := receive(t, got, "the current value"); v != "v1" {
		t.Fatalf("first value %q, want v1", v)
	}
	if !c.Nodes {
		return
	}
	other := o(t, Limits{})
	if _, err := other.UpdateSecret("turn", func([]byte) ([]byte, error) { return []byte("v2"), nil }); err != nil {
		t.Fatal(err)
	}
	if v := receive(t, got, "another node's change"); v != "v2" {
		t.Fatalf("after another node's change %q, want v2", v)
	}
}

// testWatchSigningKeys: the watcher is called at the start and, where
// other nodes exist, after another node adds a key.
func testWatchSigningKeys(t *testing.T, c Config) {
	s, o := open(t, c, Limits{})
	calls := make(chan struct{}, 16)
	watching(t, func(ctx context.Context) { s.WatchSigningKeys(ctx, func() { calls <- struct{}{} }) })
	receive(t, calls, "the call at the start")
	if !c.Nodes {
		return
	}
	other := o(t, Limits{})
	if err := other.AddSigningKey(store.SigningKey{ID: "k9", Alg: "EdDSA", Private: []byte("p")}); err != nil {
		t.Fatal(err)
	}
	receive(t, calls, "another node's new key")
}
