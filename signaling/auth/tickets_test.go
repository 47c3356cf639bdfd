package auth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestTicketsSingleUse(t *testing.T) {
	clk := newClock()
	tk := NewTickets(TicketsOptions{Now: clk.Now})
	id, err := tk.Issue(Claims{User: "ann", Role: "user", Rooms: []string{"r"}}, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := base64.RawURLEncoding.DecodeString(id); err != nil || len(b) != 32 {
		t.Fatalf("ticket %q is not 32 bytes base64url", id)
	}
	c, ok := tk.Redeem(id, clk.Now())
	if !ok || c.User != "ann" || c.Rooms[0] != "r" {
		t.Fatalf("Redeem = %+v, %v", c, ok)
	}
	if _, ok := tk.Redeem(id, clk.Now()); ok {
		t.Fatal("ticket redeemed twice")
	}
	if _, ok := tk.Redeem("nope", clk.Now()); ok {
		t.Fatal("unknown ticket redeemed")
	}
}

func TestTicketsConcurrentRedeemOnce(t *testing.T) {
	clk := newClock()
	tk := NewTickets(TicketsOptions{Now: clk.Now})
	id, _ := tk.Issue(Claims{User: "ann"}, "192.0.2.1")
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, ok := tk.Redeem(id, clk.Now()); ok {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d redemptions succeeded, want 1", wins)
	}
}

func TestTicketsExpire(t *testing.T) {
	clk := newClock()
	tk := NewTickets(TicketsOptions{Now: clk.Now})
	id, _ := tk.Issue(Claims{User: "ann"}, "192.0.2.1")
	late := clk.Now().Add(DefaultTicketTTL)
	if _, ok := tk.Redeem(id, late); ok {
		t.Fatal("expired ticket redeemed")
	}
	id2, _ := tk.Issue(Claims{User: "ann"}, "192.0.2.1")
	if _, ok := tk.Redeem(id2, clk.Now().Add(DefaultTicketTTL-time.Second)); !ok {
		t.Fatal("ticket rejected before expiry")
	}
}

func TestTicketsBounded(t *testing.T) {
	clk := newClock()
	tk := NewTickets(TicketsOptions{Now: clk.Now, MaxTickets: 10, TTL: time.Second})
	for i := range 10 {
		if _, err := tk.Issue(Claims{User: fmt.Sprint("u", i)}, fmt.Sprint("192.0.2.", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tk.Issue(Claims{User: "ann"}, "192.0.2.200"); !errors.Is(err, ErrTooManyTickets) {
		t.Fatalf("11th ticket err = %v, want ErrTooManyTickets", err)
	}
	clk.Advance(time.Second) // all expire; the next Issue sweeps them
	for i := range 10 {
		if _, err := tk.Issue(Claims{User: fmt.Sprint("u", i)}, fmt.Sprint("192.0.2.", i)); err != nil {
			t.Fatalf("issue after expiry: %v", err)
		}
	}
	if n := tk.Len(); n != 10 {
		t.Fatalf("live tickets = %d, want 10", n)
	}
	if len(tk.queue)-tk.head != 10 || len(tk.queue) > 20 {
		t.Fatalf("queue not compacted: len %d head %d", len(tk.queue), tk.head)
	}
}

// TestTicketsPerUserAndAddress: one user, or one address, holds only a few
// unredeemed tickets, so nobody fills the table for everyone; redeeming or
// expiry gives the share back (issue 14, point 3).
func TestTicketsPerUserAndAddress(t *testing.T) {
	clk := newClock()
	tk := NewTickets(TicketsOptions{Now: clk.Now, PerUser: 3, PerAddr: 5})
	var ids []string
	for i := range 3 {
		id, err := tk.Issue(Claims{User: "mallory"}, fmt.Sprint("198.51.100.", i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if _, err := tk.Issue(Claims{User: "mallory"}, "198.51.100.99"); !errors.Is(err, ErrTicketQuota) {
		t.Fatalf("4th ticket of one user: %v, want ErrTicketQuota", err)
	}
	if _, err := tk.Issue(Claims{User: "ann"}, "203.0.113.1"); err != nil {
		t.Fatalf("another user is refused: %v", err)
	}
	if _, ok := tk.Redeem(ids[0], clk.Now()); !ok {
		t.Fatal("redeem")
	}
	if _, err := tk.Issue(Claims{User: "mallory"}, "198.51.100.99"); err != nil {
		t.Fatalf("after a redeem: %v", err)
	}
	// Per address, IPv6 per /64: many users of one network are capped too.
	for i := range 5 {
		if _, err := tk.Issue(Claims{User: fmt.Sprint("sock", i)}, fmt.Sprintf("2001:db8::%x", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tk.Issue(Claims{User: "sock9"}, "2001:db8::ffff"); !errors.Is(err, ErrTicketQuota) {
		t.Fatalf("6th ticket of one /64: %v, want ErrTicketQuota", err)
	}
	clk.Advance(DefaultTicketTTL)
	if _, err := tk.Issue(Claims{User: "sock9"}, "2001:db8::ffff"); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if len(tk.perUser) != 1 || len(tk.perAddr) != 1 {
		t.Fatalf("counts not swept: %v %v", tk.perUser, tk.perAddr)
	}
}
