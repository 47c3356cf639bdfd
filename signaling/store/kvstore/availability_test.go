package kvstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/signaling/store"
	"github.com/khadga/khadga/signaling/store/storetest"
)

// fastFail bounds how long a method may take to report that NATS is gone:
// far below OpTimeout, so that logins are refused instead of hanging.
const fastFail = 500 * time.Millisecond

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition under a deadline
	}
}

// TestUnavailableFailsFastAndRecovers stops the NATS server under a store:
// every method fails at once with store.ErrUnavailable; when the server
// comes back (same port, same JetStream files) the store works again with
// all its data, without being reopened.
func TestUnavailableFailsFastAndRecovers(t *testing.T) {
	nats := natstest.StartCluster(t, 1) // restartable
	conn := connect(t, nats.URLs())
	s := openStore(t, conn, Options{OpTimeout: 3 * time.Second})
	storetest.Fill(t, s)
	secrets := make(chan string, 8)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.WatchSecret(ctx, "turn-rest-secret", func(v []byte) { secrets <- string(v) })
	if v := <-secrets; v != "s3cret" {
		t.Fatalf("watched secret %q", v)
	}

	nats.Stop(0)
	waitFor(t, 5*time.Second, "connection marked not ready", func() bool { return conn.Ready() != nil })
	for name, call := range map[string]func() error{
		"GetUser": func() error { _, err := s.GetUser("ann"); return err },
		"CreateFamily": func() error {
			return s.CreateFamily(store.Family{ID: "x", User: "ann", Current: []byte("h"), Expires: t0})
		},
		"Ping":  s.Ping,
		"Audit": func() error { return s.Audit(store.AuditEvent{Kind: "k"}) },
	} {
		start := time.Now()
		err := call()
		if !errors.Is(err, store.ErrUnavailable) || time.Since(start) > fastFail {
			t.Errorf("%s with NATS down: %v after %v; want ErrUnavailable within %v", name, err, time.Since(start), fastFail)
		}
	}

	nats.Restart(0)
	waitFor(t, 10*time.Second, "store usable again", func() bool { return s.Ping() == nil })
	if u, err := s.GetUser("ann"); err != nil || u.TOTP == nil {
		t.Fatalf("after NATS came back GetUser = %+v, %v", u, err)
	}
	if _, err := s.RotateFamily("fa1", []byte("h1"), []byte("h2"), t0); err != nil {
		t.Fatalf("rotate after NATS came back: %v", err)
	}
	// The watch outlived the outage.
	if _, err := s.UpdateSecret("turn-rest-secret", func([]byte) ([]byte, error) { return []byte("next"), nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-secrets:
		if v != "next" {
			t.Fatalf("watched secret after the outage %q, want next", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the secret's watch did not survive the NATS outage")
	}
}

// TestOpenWaitsForNATS: a node that starts before NATS opens its store
// once NATS is up.
func TestOpenWaitsForNATS(t *testing.T) {
	nats := natstest.StartCluster(t, 1)
	url := nats.URLs()
	nats.Stop(0)
	conn := connect(t, url)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s, err := Open(ctx, conn, Options{Prefix: "late"})
		if err == nil {
			err = s.CreateUser(store.User{Name: "ann"})
		}
		done <- err
	}()
	nats.Restart(0)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestOpenGivesUp: without NATS, Open returns when its context ends.
func TestOpenGivesUp(t *testing.T) {
	nats := natstest.StartCluster(t, 1)
	url := nats.URLs()
	nats.Stop(0)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := Open(ctx, connect(t, url), Options{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open without NATS err = %v, want the context's deadline", err)
	}
}

// TestThreeServerCluster runs the store with three replicas on a cluster
// of three NATS servers, its two nodes connected to different servers:
// the rotation race has one winner there too (replicated streams report
// revision conflicts with another error code); losing one server changes
// nothing; losing two makes the store unavailable at once, and it works
// again when they return.
func TestThreeServerCluster(t *testing.T) {
	begin := time.Now()
	c := natstest.StartCluster(t, 3)
	t.Logf("phase: cluster at %v", time.Since(begin))
	a := openStore(t, connect(t, c.Servers[0].ClientURL()), Options{Replicas: 3})
	b := openStore(t, connect(t, c.Servers[2].ClientURL()), Options{Replicas: 3})
	if err := a.CreateUser(store.User{Name: "ann"}); err != nil {
		t.Fatal(err)
	}
	tries := 0
	// create makes a family for a race; a failed try may have half
	// happened, so each try takes a new id.
	create := func() (string, error) {
		tries++
		id := fmt.Sprint("f", tries)
		return id, a.CreateFamily(store.Family{ID: id, User: "ann", Current: []byte("h0"), Expires: time.Now().Add(time.Hour)})
	}
	race := func(id string) {
		t.Helper()
		errs := make(chan error, 2)
		for i, s := range []*Store{a, b} {
			go func() { _, err := s.RotateFamily(id, []byte("h0"), []byte{byte(i)}, time.Now()); errs <- err }()
		}
		e1, e2 := <-errs, <-errs
		if (e1 == nil) == (e2 == nil) {
			t.Fatalf("%s: rotations ended %v and %v; want exactly one success", id, e1, e2)
		}
		if f, err := b.GetFamily(id); err != nil || !f.Revoked {
			t.Fatalf("%s after the race: %+v, %v; want revoked", id, f, err)
		}
	}
	f1, err1 := create()
	f2, err2 := create()
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	race(f1)

	c.Stop(1) // a minority: the cluster carries on
	race(f2)

	t.Logf("phase: two races done at %v", time.Since(begin))
	c.Stop(2) // b's server, and the quorum, gone
	waitFor(t, 10*time.Second, "a refuses without quorum", func() bool {
		_, err := a.GetUser("ann")
		return errors.Is(err, store.ErrUnavailable)
	})
	start := time.Now()
	if _, err := a.GetUser("ann"); !errors.Is(err, store.ErrUnavailable) || time.Since(start) > fastFail {
		t.Errorf("without quorum GetUser = %v after %v; want ErrUnavailable at once", err, time.Since(start))
	}
	t.Logf("phase: refused at %v", time.Since(begin))
	c.Restart(1)
	c.Restart(2)
	// Each bucket elects its leader on its own, so ready must mean that
	// every bucket has one: a read of each then succeeds at once (a join
	// that read its room while the rooms bucket still had no leader
	// failed, after the node had said it was ready).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.conn.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	readsEveryBucket(t, a)
	t.Logf("phase: ready at %v", time.Since(begin))
	// Wait until both nodes can write every bucket a rotation needs again.
	touch := func(s *Store) bool { return s.UpdateUser("ann", func(*store.User) error { return nil }) == nil }
	var f3 string
	waitFor(t, 20*time.Second, "both nodes usable again", func() bool {
		var err error
		f3, err = create()
		return err == nil && touch(a) && touch(b)
	})
	t.Logf("phase: recovered at %v", time.Since(begin))
	race(f3)
}

// TestReadsSeeEarlierWrites: once a write has returned on one node, a
// read on any node sees it, also through a NATS server that holds a
// follower replica of the bucket that is still catching up after a
// restart. (Direct gets, which followers answer once 90% caught up,
// failed this: a revocation written by one node was missing from the
// next read on another.)
func TestReadsSeeEarlierWrites(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	w := openStore(t, connect(t, c.Servers[0].ClientURL()), Options{Replicas: 3})
	r := openStore(t, connect(t, c.Servers[2].ClientURL()), Options{Replicas: 3})
	if err := w.CreateUser(store.User{Name: "ann"}); err != nil {
		t.Fatal(err)
	}
	family := func(id string) store.Family {
		return store.Family{ID: id, User: "ann", Current: []byte("h0"), Expires: time.Now().Add(time.Hour)}
	}
	// Writes that r's server must catch up on after its restart.
	c.Stop(2)
	old := 0
	waitFor(t, 20*time.Second, "w writes while r's server is down (once a stream whose leader it was elects another)", func() bool {
		old++
		return w.CreateFamily(family(fmt.Sprint("old", old))) == nil
	})
	for old < 200 {
		old++
		if err := w.CreateFamily(family(fmt.Sprint("old", old))); err != nil {
			t.Fatal(err)
		}
	}
	c.Restart(2)
	waitFor(t, 20*time.Second, "r usable again", func() bool { _, err := r.GetUser("ann"); return err == nil })
	for i := range 100 {
		id := fmt.Sprint("f", i)
		if err := w.CreateFamily(family(id)); err != nil {
			t.Fatal(err)
		}
		if err := w.RevokeFamily(id); err != nil {
			t.Fatal(err)
		}
		if f, err := r.GetFamily(id); err != nil || !f.Revoked {
			t.Fatalf("%s read on another node right after its revocation: %+v, %v; want revoked", id, f, err)
		}
	}
}

// readsEveryBucket reads from each of s's buckets, failing on anything
// but a value or "not found".
func readsEveryBucket(t *testing.T, s *Store) {
	t.Helper()
	reads := map[string]func() error{
		"accounts":     func() error { _, err := s.GetUser("ann"); return err },
		"families":     func() error { _, err := s.GetFamily("absent"); return err },
		"rooms":        func() error { _, err := s.GetRoom("lobby"); return err },
		"bot-tokens":   func() error { _, err := s.GetBotToken("absent"); return err },
		"signing-keys": func() error { _, err := s.SigningKeys(); return err },
		"secrets":      func() error { _, err := s.Secrets(); return err },
	}
	for name, read := range reads {
		if err := read(); err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("read from %s once ready: %v", name, err)
		}
	}
}
