package kvstore

import (
	"context"
	"errors"
	"regexp"
	"testing"
	"time"

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

// TestRotationRaceIsCompareAndSwap makes the race of two nodes exact: node
// A reads the family, node B rotates it, then A writes. A's write must
// fail on the revision, and A's retry must see the rotated secret and
// revoke the family as reuse.
func TestRotationRaceIsCompareAndSwap(t *testing.T) {
	prefix := newPrefix()
	reg := prometheus.NewRegistry()
	a := openStore(t, connect(t, shared.ClientURL()), Options{Prefix: prefix, Registerer: reg})
	b := openStore(t, connect(t, shared.ClientURL()), Options{Prefix: prefix})
	if err := a.CreateUser(store.User{Name: "ann"}); err != nil {
		t.Fatal(err)
	}
	f := store.Family{ID: "f", User: "ann", Current: []byte("h0"), Created: t0, Expires: time.Now().Add(time.Hour)}
	if err := a.CreateFamily(f); err != nil {
		t.Fatal(err)
	}
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
