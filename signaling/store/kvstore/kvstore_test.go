package kvstore

import (
	"context"
	"errors"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/khadga/khadga/signaling/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var t0 = time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)

// TestKeys: every name becomes a valid KV key, and different names
// different keys.
func TestKeys(t *testing.T) {
	valid := regexp.MustCompile(`^[-/_=a-zA-Z0-9]+$`)
	seen := map[string]string{}
	for _, n := range []string{"ann", "a.b", "a=2Eb", "=", "a b", "a*", ">", ".x", "x.", "日本", "a/b", "A", "a"} {
		k := key(n)
		if !valid.MatchString(k) {
			t.Errorf("key(%q) = %q is not a valid KV key", n, k)
		}
		if other, ok := seen[k]; ok {
			t.Errorf("key(%q) = key(%q) = %q", n, other, k)
		}
		seen[k] = n
	}
	if key("alice-01_x") != "alice-01_x" || key("a.b") != "a=2Eb" {
		t.Errorf("keys not readable: %q %q", key("alice-01_x"), key("a.b"))
	}
}

// twoNodesWithFamily opens two stores on one prefix, as two nodes would,
// with user ann and her refresh family f at token hash h0. a's metrics go
// to reg.
func twoNodesWithFamily(t *testing.T) (a, b *Store, reg *prometheus.Registry) {
	prefix := newPrefix()
	reg = prometheus.NewRegistry()
	a = openStore(t, connect(t, shared.ClientURL()), Options{Prefix: prefix, Registerer: reg})
	b = openStore(t, connect(t, shared.ClientURL()), Options{Prefix: prefix})
	if err := a.CreateUser(store.User{Name: "ann"}); err != nil {
		t.Fatal(err)
	}
	f := store.Family{ID: "f", User: "ann", Current: []byte("h0"), Created: t0, Expires: time.Now().Add(time.Hour)}
	if err := a.CreateFamily(f); err != nil {
		t.Fatal(err)
	}
	return a, b, reg
}

// TestRotationRaceIsCompareAndSwap makes the race of two nodes exact: node
// A reads the family, node B rotates it, then A writes. A's write must
// fail on the revision, and A's retry must see the rotated secret and
// revoke the family as reuse.
func TestRotationRaceIsCompareAndSwap(t *testing.T) {
	a, b, reg := twoNodesWithFamily(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	attempts := 0
	err := modify(ctx, a, "rotate_family", a.accounts, key("ann"), false, func(acct *account, _ bool) (bool, error) {
		attempts++
		if attempts == 1 { // between A's read and A's write
			if _, err := b.RotateFamily("f", []byte("h0"), []byte("hb"), t0); err != nil {
				t.Fatalf("node b: %v", err)
			}
		}
		err := acct.Families[acct.family("f")].Rotate([]byte("h0"), []byte("ha"), t0)
		return !errors.Is(err, store.ErrRevoked), err
	})
	if !errors.Is(err, store.ErrTokenReuse) || attempts != 2 {
		t.Fatalf("node a: err %v after %d attempts; want reuse on the second", err, attempts)
	}
	got, err := b.GetFamily("f")
	if err != nil || !got.Revoked || string(got.Current) != "hb" {
		t.Fatalf("family = %+v, %v; want b's rotation, then revoked", got, err)
	}
	if n := testutil.ToFloat64(a.metrics.conflicts.WithLabelValues("rotate_family")); n != 1 {
		t.Errorf("conflicts counted = %v, want 1", n)
	}
	if n, _ := testutil.GatherAndCount(reg, "khadga_kv_operations_total", "khadga_kv_operation_seconds"); n == 0 {
		t.Error("no operation metrics registered")
	}
}

// TestConflictsGiveUp: a record that changes under every attempt ends in
// store.ErrConflict, not an endless loop, and nothing of fn is written.
func TestConflictsGiveUp(t *testing.T) {
	prefix := newPrefix()
	a := openStore(t, connect(t, shared.ClientURL()), Options{Prefix: prefix})
	b := openStore(t, connect(t, shared.ClientURL()), Options{Prefix: prefix})
	if err := a.CreateUser(store.User{Name: "ann", Role: "user"}); err != nil {
		t.Fatal(err)
	}
	calls := 0
	err := a.UpdateUser("ann", func(u *store.User) error {
		calls++
		// Another node writes the record every time: a's write always loses.
		if err := b.UpdateUser("ann", func(u *store.User) error { u.Rooms = append(u.Rooms, "x"); return nil }); err != nil {
			t.Fatal(err)
		}
		u.Role = "admin"
		return nil
	})
	if !errors.Is(err, store.ErrConflict) || calls != maxAttempts {
		t.Fatalf("err = %v after %d calls; want ErrConflict after %d", err, calls, maxAttempts)
	}
	if u, _ := a.GetUser("ann"); u.Role != "user" || len(u.Rooms) != maxAttempts {
		t.Fatalf("user = %+v; want b's %d writes and not a's", u, maxAttempts)
	}
}

// TestAuditStreamBounds: the stream is created with the configured limits.
func TestAuditStreamBounds(t *testing.T) {
	s := openStore(t, connect(t, shared.ClientURL()), Options{Prefix: newPrefix(), AuditMax: 1234, AuditMaxAge: 36 * time.Hour, Replicas: 1})
	info, err := s.audit.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c := info.Config; c.MaxMsgs != 1234 || c.MaxAge != 36*time.Hour || c.Replicas != 1 {
		t.Fatalf("audit stream config = max %d, age %v, replicas %d", c.MaxMsgs, c.MaxAge, c.Replicas)
	}
}

func TestOptionsValidated(t *testing.T) {
	for _, o := range []Options{{Prefix: "a.b"}, {Prefix: "x y"}, {Replicas: 7}, {MaxFamiliesPerUser: 10_000}} {
		if _, err := Open(context.Background(), nil, o); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Open(%+v) err = %v, want ErrInvalid", o, err)
		}
	}
}

// signInOn returns a write of another sign-in of ann ("g") on node b: a
// later write of the account, for a lossy's after.
func signInOn(t *testing.T, b *Store) func() {
	return func() {
		g := store.Family{ID: "g", User: "ann", Current: []byte("g0"), Created: t0, Expires: time.Now().Add(time.Hour)}
		if err := b.CreateFamily(g); err != nil {
			t.Errorf("node b: %v", err)
		}
	}
}

// lossy loses the answer of one Update, as a timeout or a dropped
// connection would: applied says whether the write reached JetStream
// first; meanwhile runs before it and after it (another node's write)
// before the answer is lost.
type lossy struct {
	jetstream.KeyValue
	armed            atomic.Bool
	applied          bool
	meanwhile, after func()
}

func (l *lossy) Update(ctx context.Context, k string, v []byte, rev uint64) (uint64, error) {
	if !l.armed.CompareAndSwap(true, false) {
		return l.KeyValue.Update(ctx, k, v, rev)
	}
	if l.meanwhile != nil {
		l.meanwhile()
	}
	if l.applied {
		if _, err := l.KeyValue.Update(ctx, k, v, rev); err != nil {
			return 0, err
		}
	}
	if l.after != nil {
		l.after()
	}
	return 0, nats.ErrTimeout
}

// TestLostAnswerIsSettled: a refresh rotation whose answer is lost is
// reported as what it was. Applied, it is a success (reported as a
// failure, the client's retry with the same token would find it rotated
// away and revoke the family: a user signed out for a slow answer), also
// when another sign-in of the user changed the record after it. Not
// applied, it is sent again, once. Overtaken by another node's rotation of
// the same token, it is that race: reuse, and the family revoked.
func TestLostAnswerIsSettled(t *testing.T) {
	for _, tc := range []struct {
		name      string
		applied   bool
		overtaken bool
		later     bool // another family of the user is written after it
	}{{"applied", true, false, false}, {"applied, then the record changed", true, false, true},
		{"not applied", false, false, false}, {"overtaken", false, true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, _ := twoNodesWithFamily(t)
			l := &lossy{KeyValue: a.accounts.KeyValue, applied: tc.applied}
			if tc.overtaken {
				l.meanwhile = func() {
					if _, err := b.RotateFamily("f", []byte("h0"), []byte("hb"), t0); err != nil {
						t.Errorf("node b: %v", err)
					}
				}
			}
			if tc.later {
				l.after = signInOn(t, b)
			}
			l.armed.Store(true)
			a.accounts.KeyValue = l

			_, err := a.RotateFamily("f", []byte("h0"), []byte("h1"), t0)
			got, gerr := b.GetFamily("f")
			if gerr != nil {
				t.Fatal(gerr)
			}
			if l.armed.Load() {
				t.Fatal("no answer was lost: the test did not run its case")
			}
			if tc.overtaken {
				if !errors.Is(err, store.ErrTokenReuse) || !got.Revoked || string(got.Current) != "hb" {
					t.Fatalf("err %v, family %+v; want reuse after b's rotation, family revoked", err, got)
				}
				return
			}
			if err != nil || got.Revoked || string(got.Current) != "h1" || got.Generation != 1 {
				t.Fatalf("err %v, family %+v; want the rotation to h1, reported as done", err, got)
			}
			if _, err := a.RotateFamily("f", []byte("h1"), []byte("h2"), t0); err != nil {
				t.Fatalf("the new token: %v", err)
			}
			if n := testutil.ToFloat64(a.metrics.lostAnswer.WithLabelValues("rotate_family")); n != 1 {
				t.Errorf("lost answers counted = %v, want 1", n)
			}
		})
	}
}

// TestLostAnswerNeverAppliesTwice: a write whose answer is lost, and
// whose record another writer changed before it could be read back, is
// reported as failed (its outcome unknown), not written again: without a
// way to recognise it (as a rotation has), running it again on a record
// that holds it already would apply it twice (two copies of a family,
// each counted against the user's limit).
func TestLostAnswerNeverAppliesTwice(t *testing.T) {
	a, b, _ := twoNodesWithFamily(t)
	l := &lossy{KeyValue: a.accounts.KeyValue, applied: true, after: func() {
		if err := b.RevokeFamily("f"); err != nil {
			t.Errorf("node b: %v", err)
		}
	}}
	l.armed.Store(true)
	a.accounts.KeyValue = l
	g := store.Family{ID: "g", User: "ann", Current: []byte("g0"), Created: t0, Expires: time.Now().Add(time.Hour)}
	err := a.CreateFamily(g)
	if l.armed.Load() {
		t.Fatal("no answer was lost: the test did not run its case")
	}
	if err == nil {
		t.Error("CreateFamily reported success for a write whose outcome it could not know")
	}
	var acct account
	if _, err := get(context.Background(), b.accounts, key("ann"), &acct); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range acct.Families {
		if f.ID == "g" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("family g is in ann's record %d times, want once (written, and not again)", n)
	}
}

// TestLostAnswerOfReuse: a replayed token's revocation whose answer is
// lost, under a later write of another sign-in, is still reported as
// reuse (so that the sign-in's sessions end with that reason), not as a
// family found revoked.
func TestLostAnswerOfReuse(t *testing.T) {
	a, b, _ := twoNodesWithFamily(t)
	if _, err := a.RotateFamily("f", []byte("h0"), []byte("h1"), t0); err != nil {
		t.Fatal(err)
	}
	l := &lossy{KeyValue: a.accounts.KeyValue, applied: true, after: signInOn(t, b)}
	l.armed.Store(true)
	a.accounts.KeyValue = l
	_, err := a.RotateFamily("f", []byte("h0"), []byte("h2"), t0) // h0 was rotated away: a replay
	if l.armed.Load() {
		t.Fatal("no answer was lost: the test did not run its case")
	}
	if !errors.Is(err, store.ErrTokenReuse) {
		t.Fatalf("err %v, want token reuse", err)
	}
	if f, err := b.GetFamily("f"); err != nil || !f.Revoked {
		t.Fatalf("family %+v, %v; want revoked", f, err)
	}
}

// lossyTwice loses the answers of the next two Updates: the first is not
// applied, the second (settle's, sent again) is.
type lossyTwice struct {
	jetstream.KeyValue
	lost atomic.Int32
}

func (l *lossyTwice) Update(ctx context.Context, k string, v []byte, rev uint64) (uint64, error) {
	switch l.lost.Add(1) {
	case 1:
		return 0, nats.ErrTimeout
	case 2:
		if _, err := l.KeyValue.Update(ctx, k, v, rev); err != nil {
			return 0, err
		}
		return 0, nats.ErrTimeout
	}
	return l.KeyValue.Update(ctx, k, v, rev)
}

// TestLostAnswerOfTheWriteSentAgain: a rotation whose answer is lost is
// found not applied and sent again, and the answer of that one is lost
// too, although it was applied. It is a success: it was reported as a
// failure without reading the record back, and the client's retry with
// the same token found it rotated away and revoked the family as reuse
// (a user signed out for two slow answers).
func TestLostAnswerOfTheWriteSentAgain(t *testing.T) {
	a, b, _ := twoNodesWithFamily(t)
	l := &lossyTwice{KeyValue: a.accounts.KeyValue}
	a.accounts.KeyValue = l
	_, err := a.RotateFamily("f", []byte("h0"), []byte("h1"), t0)
	if n := l.lost.Load(); n < 2 {
		t.Fatalf("%d updates, want the two whose answers are lost: the test did not run its case", n)
	}
	got, gerr := b.GetFamily("f")
	if gerr != nil {
		t.Fatal(gerr)
	}
	if string(got.Current) != "h1" || got.Revoked {
		t.Fatalf("family %+v: want it rotated to h1 (the second write applied)", got)
	}
	if err != nil {
		t.Fatalf("RotateFamily: %v; it was applied, and the client's retry with h0 would revoke the family as reuse", err)
	}
}

// TestLostAnswerOfRevokingEverySignIn: "sign out everywhere" (a password
// change, an account deleted) whose answer is lost, under a later write
// of another sign-in, is a success, with the families it revoked: the
// record shows them revoked. Reported as failed, the caller's retry
// found nothing left to revoke and returned no ids, so the sockets of
// those sign-ins were never closed.
func TestLostAnswerOfRevokingEverySignIn(t *testing.T) {
	a, b, _ := twoNodesWithFamily(t)
	l := &lossy{KeyValue: a.accounts.KeyValue, applied: true, after: signInOn(t, b)}
	l.armed.Store(true)
	a.accounts.KeyValue = l
	ids, err := a.RevokeUserFamilyIDs("ann")
	if l.armed.Load() {
		t.Fatal("no answer was lost: the test did not run its case")
	}
	if f, gerr := b.GetFamily("f"); gerr != nil || !f.Revoked {
		t.Fatalf("family f %+v, %v; want revoked (the write was applied)", f, gerr)
	}
	if err != nil || len(ids) != 1 || ids[0] != "f" {
		t.Fatalf("RevokeUserFamilyIDs = %v, %v; want [f] and no error (again, it would find nothing to revoke: %v)",
			ids, err, func() []string { again, _ := a.RevokeUserFamilyIDs("ann"); return again }())
	}
}
