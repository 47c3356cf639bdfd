package kvstore

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/khadga/khadga/signaling/store"
)

// step is what one write of a store meets in faults: before runs first
// (another node's claim, say); then, unless fail is set, the write goes
// through; with fail, it is applied only if apply is set, then after
// runs, and it is answered nats.ErrTimeout either way, as a lost answer
// would be.
type step struct {
	before, after func()
	fail, apply   bool
}

// faults takes the writes of a store's accounts and rooms buckets through
// its steps, one step a write, in the order they come; past them, writes
// go through.
type faults struct {
	mu    sync.Mutex
	steps []step
}

// on has f take the writes of a store's bucket.
func (f *faults) on(b *bucket) { b.KeyValue = &faultyKV{KeyValue: b.KeyValue, f: f} }

func (f *faults) set(steps ...step) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.steps = steps
}

func (f *faults) left() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.steps)
}

func (f *faults) write(do func() (uint64, error)) (uint64, error) {
	f.mu.Lock()
	if len(f.steps) == 0 {
		f.mu.Unlock()
		return do()
	}
	st := f.steps[0]
	f.steps = f.steps[1:]
	f.mu.Unlock()
	if st.before != nil {
		st.before()
	}
	if !st.fail {
		return do()
	}
	if st.apply {
		if _, err := do(); err != nil {
			return 0, err
		}
	}
	if st.after != nil {
		st.after()
	}
	return 0, nats.ErrTimeout
}

type faultyKV struct {
	jetstream.KeyValue
	f *faults
}

func (k *faultyKV) Create(ctx context.Context, key string, v []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	return k.f.write(func() (uint64, error) { return k.KeyValue.Create(ctx, key, v, opts...) })
}

func (k *faultyKV) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	return k.f.write(func() (uint64, error) { return k.KeyValue.Update(ctx, key, v, rev) })
}

// twoNodesWithAnn opens two stores on one prefix, as two nodes would,
// with user ann; the writes of each to its accounts and rooms buckets go
// through the returned faults (none set).
func twoNodesWithAnn(t *testing.T) (a, b *Store, fa, fb *faults) {
	prefix := newPrefix()
	a = openStore(t, connect(t, shared.ClientURL()), Options{Prefix: prefix})
	b = openStore(t, connect(t, shared.ClientURL()), Options{Prefix: prefix})
	if err := a.CreateUser(store.User{Name: "ann"}); err != nil {
		t.Fatal(err)
	}
	fa, fb = &faults{}, &faults{}
	fa.on(a.accounts)
	fa.on(a.rooms)
	fb.on(b.accounts)
	fb.on(b.rooms)
	return a, b, fa, fb
}

func keep(*store.Room) error { return nil }

// owns reports the rooms ann owns, as b reads them, and how many rooms
// her record holds (each counts against her limit).
func owns(t *testing.T, b *Store) (names []string, slots int) {
	t.Helper()
	rooms, err := b.RoomsOwnedBy("ann")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rooms {
		names = append(names, r.Name)
	}
	var acct account
	if _, err := get(context.Background(), b.accounts, key("ann"), &acct); err != nil {
		t.Fatal(err)
	}
	return names, len(acct.Rooms)
}

// TestRoomClaimThatFailsToSealLeavesNoSlot: a claim whose seal (the write
// of the room's entry) fails is reported as failed, and leaves no room in
// its owner's record: with a limit of one room, ann claims another at
// once. The room stayed in her record, owned by nobody and invisible to
// her, and counted: every later claim was ErrTooManyRooms until she
// claimed that very name again. A seal applied whose answer was lost is
// the claim done.
func TestRoomClaimThatFailsToSealLeavesNoSlot(t *testing.T) {
	t.Run("not applied", func(t *testing.T) {
		a, b, f, _ := twoNodesWithAnn(t)
		f.set(step{}, step{fail: true}) // ann's record, then the seal
		if _, _, err := a.SetRoom("lobby", "ann", 1, keep); !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("claim with a failed seal: %v, want the seal's error", err)
		}
		if f.left() != 0 {
			t.Fatal("the seal was not failed: the test did not run its case")
		}
		if names, slots := owns(t, b); len(names) != 0 || slots != 0 {
			t.Fatalf("ann owns %q, and her record holds %d rooms; want none", names, slots)
		}
		if _, claimed, err := b.SetRoom("hall", "ann", 1, keep); err != nil || !claimed {
			t.Fatalf("another claim of ann's: claimed %v, %v", claimed, err)
		}
	})
	t.Run("applied, answer lost", func(t *testing.T) {
		a, b, f, _ := twoNodesWithAnn(t)
		f.set(step{}, step{fail: true, apply: true})
		if _, claimed, err := a.SetRoom("lobby", "ann", 1, keep); err != nil || !claimed {
			t.Fatalf("claim whose seal's answer was lost: claimed %v, %v", claimed, err)
		}
		if names, slots := owns(t, b); !slices.Equal(names, []string{"lobby"}) || slots != 1 {
			t.Fatalf("ann owns %q, and her record holds %d rooms; want lobby", names, slots)
		}
	})
}

// TestRoomClaimUndoKeepsTheOwnersConcurrentClaim: ann claims lobby on
// node a, and its seal fails; meanwhile her claim of lobby on node b
// finds the room in her record (as a claim that never sealed leaves it),
// takes it on and seals it. a's undo must not take b's room out of her
// record, whenever b seals: before a's seal fails; or after a has looked
// at the entry, before the undo's first write. And also when b took the
// room on in the record before a did (a's mark is there, not b's), and
// seals after a has looked at the entry. A naive undo (take the room out
// on any failure, or after finding the entry not sealed, or when the
// record carries this claim's mark) lost it.
func TestRoomClaimUndoKeepsTheOwnersConcurrentClaim(t *testing.T) {
	for _, tc := range []struct {
		name string
		// bFirst: b's claim writes ann's record first, and waits before
		// its seal until the step of a's that claimOnB starts.
		bFirst bool
		steps  func(claimOnB func()) []step // a's
	}{
		{"b seals before a's seal fails", false, func(claimOnB func()) []step {
			return []step{{}, {before: claimOnB, fail: true}}
		}},
		{"b seals during a's undo", false, func(claimOnB func()) []step {
			return []step{{}, {fail: true}, {before: claimOnB}}
		}},
		{"b writes the record first, seals during a's undo", true, func(claimOnB func()) []step {
			return []step{{}, {fail: true}, {before: claimOnB}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, fa, fb := twoNodesWithAnn(t)
			claim := func() {
				if _, claimed, err := b.SetRoom("lobby", "ann", 2, keep); err != nil || !claimed {
					t.Errorf("ann's claim on b: claimed %v, %v", claimed, err)
				}
			}
			claimOnB := claim
			if tc.bFirst {
				atSeal, seal, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
				fb.set(step{}, step{before: func() { close(atSeal); <-seal }})
				go func() { defer close(done); claim() }()
				<-atSeal
				claimOnB = func() { close(seal); <-done }
			}
			fa.set(tc.steps(claimOnB)...)
			_, _, err := a.SetRoom("lobby", "ann", 2, keep)
			if fa.left() != 0 || fb.left() != 0 {
				t.Fatal("the steps did not all run: the test did not run its case")
			}
			t.Logf("a's claim: %v", err)
			if names, slots := owns(t, b); !slices.Equal(names, []string{"lobby"}) || slots != 1 {
				t.Fatalf("ann owns %q, and her record holds %d rooms; want lobby, sealed on b", names, slots)
			}
			if _, err := b.GetRoom("lobby"); err != nil {
				t.Fatalf("lobby: %v", err)
			}
		})
	}
}

// TestRoomClaimWhoseRecordWriteIsLostLeavesNoSlot: the write of ann's
// record that claims lobby is applied, its answer lost, and before the
// claim reads the record back another write of ann's (her claim of hall
// on b) lands on it, so that the claim cannot tell whether its write
// was applied. The claim fails, and lobby does not stay in her record:
// with a limit of two rooms, she claims a third name at once. The claim
// returned the error and left lobby in her record, owned by nobody and
// invisible to her, yet counted: every later claim was ErrTooManyRooms
// until she claimed lobby again.
func TestRoomClaimWhoseRecordWriteIsLostLeavesNoSlot(t *testing.T) {
	a, b, f, _ := twoNodesWithAnn(t)
	hall := func() {
		if _, claimed, err := b.SetRoom("hall", "ann", 2, keep); err != nil || !claimed {
			t.Errorf("ann's claim of hall on b: claimed %v, %v", claimed, err)
		}
	}
	f.set(step{fail: true, apply: true, after: hall}) // ann's record
	_, _, err := a.SetRoom("lobby", "ann", 2, keep)
	if f.left() != 0 {
		t.Fatal("the record write was not failed: the test did not run its case")
	}
	t.Logf("the claim of lobby: %v", err)
	if names, slots := owns(t, b); !slices.Equal(names, []string{"hall"}) || slots != 1 {
		t.Fatalf("ann owns %q, and her record holds %d rooms; want hall alone", names, slots)
	}
	if _, claimed, err := b.SetRoom("den", "ann", 2, keep); err != nil || !claimed {
		t.Fatalf("another claim of ann's: claimed %v, %v", claimed, err)
	}
}
