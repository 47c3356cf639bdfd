package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/khadga/khadga/signaling/store"
)

func noChange(*store.Room) error { return nil }

// Claiming, changing and releasing a room: one owner, who alone changes it;
// an admin releases any; a deleted user's rooms are released with it, so
// that a new account of the same name inherits none.
func testRooms(t *testing.T, c Config) {
	s, _ := open(t, c, Limits{})
	mustCreateUsers(t, s, "ann", "an", "bob")
	if _, err := s.GetRoom("lobby"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetRoom of an unclaimed room err = %v, want store.ErrNotFound", err)
	}
	r, claimed, err := s.SetRoom("lobby", "ann", 3, func(r *store.Room) error {
		r.MaxMembers, r.InviteHash = 5, store.HashInvite("tok")
		return nil
	})
	if err != nil || !claimed || r.Owner != "ann" || r.MaxMembers != 5 || r.Created.IsZero() {
		t.Fatalf("claim = %+v, %v, %v", r, claimed, err)
	}
	got, err := s.GetRoom("lobby")
	if err != nil || got.Owner != "ann" || got.MaxMembers != 5 || !got.InviteMatches("tok") || got.InviteMatches("tok2") ||
		got.InviteMatches("") || !got.Created.Equal(r.Created) {
		t.Fatalf("GetRoom = %+v, %v", got, err)
	}

	// The owner changes it; nobody else can.
	r, claimed, err = s.SetRoom("lobby", "ann", 3, func(r *store.Room) error { r.InviteHash = nil; return nil })
	if err != nil || claimed || r.MaxMembers != 5 || r.InviteMatches("tok") {
		t.Fatalf("owner's change = %+v, %v, %v", r, claimed, err)
	}
	if _, _, err := s.SetRoom("lobby", "bob", 3, noChange); !errors.Is(err, store.ErrRoomOwned) {
		t.Fatalf("bob's claim of ann's room err = %v, want store.ErrRoomOwned", err)
	}
	if err := s.DeleteRoom("lobby", "bob"); !errors.Is(err, store.ErrRoomOwned) {
		t.Fatalf("bob's release of ann's room err = %v, want store.ErrRoomOwned", err)
	}

	// Bad settings change nothing.
	for name, fn := range map[string]func(*store.Room) error{
		"negative cap":  func(r *store.Room) error { r.MaxMembers = -1; return nil },
		"short hash":    func(r *store.Room) error { r.InviteHash = []byte("x"); return nil },
		"owner changed": func(r *store.Room) error { r.Owner = "bob"; return nil },
		"fn fails":      func(r *store.Room) error { r.MaxMembers = 9; return errors.New("no") },
	} {
		if _, _, err := s.SetRoom("lobby", "ann", 3, fn); err == nil {
			t.Errorf("%s: SetRoom succeeded", name)
		}
		if _, _, err := s.SetRoom("fresh", "ann", 3, fn); err == nil {
			t.Errorf("%s: SetRoom of a new room succeeded", name)
		}
	}
	if got, _ := s.GetRoom("lobby"); got.MaxMembers != 5 || got.Owner != "ann" {
		t.Fatalf("refused changes changed the room: %+v", got)
	}
	if _, _, err := s.SetRoom("fresh", "ann", 0, noChange); !errors.Is(err, store.ErrTooManyRooms) {
		t.Fatalf("claim with a limit of 0 err = %v, want store.ErrTooManyRooms", err)
	}
	if _, err := s.GetRoom("fresh"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused claim stored the room: %v", err)
	}
	if _, err := s.UpdateRoom("fresh", "ann", noChange); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateRoom of an unclaimed room err = %v, want store.ErrNotFound", err)
	}
	if _, err := s.UpdateRoom("lobby", "bob", noChange); !errors.Is(err, store.ErrRoomOwned) {
		t.Fatalf("bob's UpdateRoom of ann's room err = %v, want store.ErrRoomOwned", err)
	}
	if r, err := s.UpdateRoom("lobby", "ann", func(r *store.Room) error { r.MaxMembers = 6; return nil }); err != nil || r.MaxMembers != 6 {
		t.Fatalf("UpdateRoom = %+v, %v", r, err)
	}
	if _, _, err := s.SetRoom("mine", "ghost", 3, noChange); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a claim by no account err = %v, want ErrNotFound", err)
	}
	if _, _, err := s.SetRoom("", "ann", 3, noChange); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("empty room name err = %v, want store.ErrInvalid", err)
	}

	// At most maxOwned rooms per owner; releasing one makes room.
	for _, name := range []string{"a", "b"} {
		if _, _, err := s.SetRoom(name, "ann", 3, noChange); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.SetRoom("c", "ann", 3, noChange); !errors.Is(err, store.ErrTooManyRooms) {
		t.Fatalf("fourth claim err = %v, want store.ErrTooManyRooms", err)
	}
	if _, _, err := s.SetRoom("a", "ann", 3, noChange); err != nil {
		t.Fatalf("changing an owned room at the limit: %v", err)
	}
	if err := s.DeleteRoom("a", "ann"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRoom("a", "ann"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second release err = %v, want store.ErrNotFound", err)
	}
	if _, _, err := s.SetRoom("c", "ann", 3, noChange); err != nil {
		t.Fatalf("claim after a release: %v", err)
	}
	owned, err := s.RoomsOwnedBy("ann")
	if err != nil || len(owned) != 3 || owned[0].Name != "b" || owned[1].Name != "c" || owned[2].Name != "lobby" {
		t.Fatalf("RoomsOwnedBy = %+v, %v", owned, err)
	}
	// "an" is a prefix of "ann": the index must not mix them up.
	if owned, _ := s.RoomsOwnedBy("an"); len(owned) != 0 {
		t.Fatalf("RoomsOwnedBy(an) = %+v", owned)
	}

	// An admin releases any room; bob may then claim it.
	if err := s.DeleteRoom("b", ""); err != nil {
		t.Fatal(err)
	}
	if _, claimed, err := s.SetRoom("b", "bob", 3, noChange); err != nil || !claimed {
		t.Fatalf("bob's claim of a released room: %v, %v", claimed, err)
	}

	// Deleting ann releases her rooms, and only hers.
	if _, err := s.DeleteUser("ann"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"c", "lobby"} {
		if _, err := s.GetRoom(name); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("room %s survived its owner's deletion: %v", name, err)
		}
	}
	if owned, _ := s.RoomsOwnedBy("ann"); len(owned) != 0 {
		t.Errorf("index keeps %d rooms of a deleted user", len(owned))
	}
	if got, err := s.GetRoom("b"); err != nil || got.Owner != "bob" {
		t.Errorf("bob's room after ann's deletion: %+v, %v", got, err)
	}
}

// Claims race in one transaction each: of many users claiming one room,
// exactly one owns it, and one user claiming many rooms at once never
// passes the limit.
func testRoomClaimsRace(t *testing.T, c Config) {
	s, _ := open(t, c, Limits{})
	const n = 16
	mustCreateUsers(t, s, "greedy")
	for i := range n {
		mustCreateUsers(t, s, fmt.Sprint("user", i))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = s.SetRoom("hot", fmt.Sprint("user", i), 5, noChange)
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrRoomOwned):
			t.Errorf("unexpected error %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d users claimed one room", won)
	}

	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = s.SetRoom(fmt.Sprint("r", i), "greedy", 5, noChange)
		}()
	}
	wg.Wait()
	owned, err := s.RoomsOwnedBy("greedy")
	if err != nil || len(owned) != 5 {
		t.Fatalf("greedy owns %d rooms (%v), want the limit, 5", len(owned), err)
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, store.ErrTooManyRooms) {
			t.Errorf("unexpected error %v", err)
		}
	}
}
