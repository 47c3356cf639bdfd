package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/store"
)

func testSigningKeys(t *testing.T, c Config) {
	s, _ := open(t, c, Limits{})
	k2 := store.SigningKey{ID: "k2", Alg: "EdDSA", Private: []byte("p2"), Created: t0.Add(time.Hour)}
	k1 := store.SigningKey{ID: "k1", Alg: "EdDSA", Private: []byte("p1"), Created: t0}
	k3 := store.SigningKey{ID: "k.3", Alg: "EdDSA", Private: []byte("p3"), Created: t0.Add(time.Hour)}
	for _, k := range []store.SigningKey{k2, k1, k3} {
		if err := s.AddSigningKey(k); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddSigningKey(k1); !errors.Is(err, store.ErrKeyExists) {
		t.Fatalf("duplicate key err = %v", err)
	}
	if err := s.AddSigningKey(store.SigningKey{ID: "k4", Alg: "EdDSA"}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("key without material err = %v", err)
	}
	if err := s.RetireSigningKey("k1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RetireSigningKey("nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("retire unknown err = %v", err)
	}
	keys, err := s.SigningKeys()
	if err != nil || len(keys) != 3 {
		t.Fatalf("SigningKeys = %+v, %v", keys, err)
	}
	// Oldest first, then by id.
	if keys[0].ID != "k1" || !keys[0].Retired || keys[1].ID != "k.3" || keys[2].ID != "k2" || keys[2].Retired ||
		string(keys[2].Private) != "p2" {
		t.Fatalf("keys not oldest-first with retirement: %+v", keys)
	}
}

func testSecretGetOrCreate(t *testing.T, c Config) {
	s, _ := open(t, c, Limits{})
	calls := 0
	gen := func() ([]byte, error) { calls++; return []byte(fmt.Sprint("v", calls)), nil }
	a, err := s.Secret("turn", gen)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Secret("turn", gen)
	if err != nil || !bytes.Equal(a, b) || calls != 1 {
		t.Fatalf("second Secret = %q, %v after %d generate calls; want %q from 1 call", b, err, calls, a)
	}
	if _, err := s.Secret("bad", func() ([]byte, error) { return nil, nil }); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("empty generated secret err = %v", err)
	}
	big := func() ([]byte, error) { return make([]byte, store.MaxSecretLen+1), nil }
	if _, err := s.Secret("bad", big); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("oversized generated secret err = %v", err)
	}
	boom := errors.New("boom")
	if _, err := s.Secret("bad", func() ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("generate error = %v", err)
	}
	// A failed generate stored nothing.
	if c, err := s.Secret("bad", func() ([]byte, error) { return []byte("ok"), nil }); err != nil || string(c) != "ok" {
		t.Fatalf("Secret after failures = %q, %v", c, err)
	}
	if _, err := s.Secret("", gen); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("empty secret name err = %v", err)
	}
}

// testSecretConcurrentAgree: many callers (and nodes) creating the same
// secret at once all get the one value that was stored.
func testSecretConcurrentAgree(t *testing.T, c Config) {
	s, o := open(t, c, Limits{})
	nodes := []store.Backend{s}
	if c.Nodes {
		nodes = append(nodes, o(t, Limits{}))
	}
	const n = 8
	out := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			v, err := nodes[i%len(nodes)].Secret("turn", func() ([]byte, error) { return []byte(fmt.Sprint("gen", i)), nil })
			if err != nil {
				t.Error(err)
			}
			out[i] = v
		})
	}
	wg.Wait()
	for i := range out {
		if !bytes.Equal(out[i], out[0]) {
			t.Fatalf("callers disagree on the secret: %q", out)
		}
	}
}

func testUpdateSecret(t *testing.T, c Config) {
	s, _ := open(t, c, Limits{})
	v, err := s.UpdateSecret("turn", func(old []byte) ([]byte, error) {
		if old != nil {
			return nil, fmt.Errorf("old = %q, want nil for a new secret", old)
		}
		return []byte("one"), nil
	})
	if err != nil || string(v) != "one" {
		t.Fatalf("UpdateSecret new = %q, %v", v, err)
	}
	v, err = s.UpdateSecret("turn", func(old []byte) ([]byte, error) { return append([]byte("two\n"), old...), nil })
	if err != nil || string(v) != "two\none" {
		t.Fatalf("UpdateSecret = %q, %v", v, err)
	}
	boom := errors.New("boom")
	if _, err := s.UpdateSecret("turn", func([]byte) ([]byte, error) { return []byte("x"), boom }); !errors.Is(err, boom) {
		t.Fatalf("UpdateSecret fn error = %v", err)
	}
	if _, err := s.UpdateSecret("turn", func([]byte) ([]byte, error) { return nil, nil }); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("UpdateSecret empty err = %v", err)
	}
	got, err := s.Secret("turn", func() ([]byte, error) { return nil, errors.New("must not generate") })
	if err != nil || string(got) != "two\none" {
		t.Fatalf("Secret after updates = %q, %v", got, err)
	}
	if _, err := s.Secret("other", func() ([]byte, error) { return []byte("o"), nil }); err != nil {
		t.Fatal(err)
	}
	all, err := s.Secrets()
	if err != nil || len(all) != 2 || string(all["turn"]) != "two\none" || string(all["other"]) != "o" {
		t.Fatalf("Secrets = %q, %v", all, err)
	}
}
