package kvstore

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/natsconn"
	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/internal/testlog"
	"github.com/nats-io/nats-server/v2/server"
)

// shared is the NATS server most tests of the package use, each with its
// own bucket prefix.
var shared *server.Server

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kvstore-nats-*")
	if err != nil {
		log.Fatal(err)
	}
	s, err := natstest.New(dir)
	if err != nil {
		log.Fatal(err)
	}
	shared = s
	code := m.Run()
	s.Shutdown()
	s.WaitForShutdown()
	os.RemoveAll(dir)
	os.Exit(code)
}

var prefixes atomic.Int64

// newPrefix is a bucket prefix no other test uses.
func newPrefix() string { return fmt.Sprintf("t%d", prefixes.Add(1)) }

// connect opens a NATS connection to url for t, closed at its end.
func connect(t *testing.T, url string) *natsconn.Conn {
	t.Helper()
	c, err := natsconn.Connect(natsconn.Options{URLs: []string{url}, Logger: testlog.New(t, slog.LevelInfo),
		ReconnectWait: 50 * time.Millisecond, ProbeInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// openStore opens a store with prefix on conn, waiting for NATS.
func openStore(t *testing.T, conn *natsconn.Conn, opts Options) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if opts.Logger == nil {
		opts.Logger = testlog.New(t, slog.LevelInfo)
	}
	s, err := Open(ctx, conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
