package auth

import (
	"encoding/base64"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestTicketsSingleUse(t *testing.T) {
	clk := newClock()
	tk := NewTickets(TicketsOptions{Now: clk.Now})
	id, err := tk.Issue(Claims{User: "ann", Role: "user", Rooms: []string{"r"}})
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
	id, _ := tk.Issue(Claims{User: "ann"})
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
	id, _ := tk.Issue(Claims{User: "ann"})
	late := clk.Now().Add(DefaultTicketTTL)
	if _, ok := tk.Redeem(id, late); ok {
		t.Fatal("expired ticket redeemed")
	}
	id2, _ := tk.Issue(Claims{User: "ann"})
	if _, ok := tk.Redeem(id2, clk.Now().Add(DefaultTicketTTL-time.Second)); !ok {
		t.Fatal("ticket rejected before expiry")
	}
}

func TestTicketsBounded(t *testing.T) {
	clk := newClock()
	tk := NewTickets(TicketsOptions{Now: clk.Now, MaxTickets: 10, TTL: time.Second})
	for range 10 {
		if _, err := tk.Issue(Claims{User: "ann"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tk.Issue(Claims{User: "ann"}); !errors.Is(err, ErrTooManyTickets) {
		t.Fatalf("11th ticket err = %v, want ErrTooManyTickets", err)
	}
	clk.Advance(time.Second) // all expire; the next Issue sweeps them
	for range 10 {
		if _, err := tk.Issue(Claims{User: "ann"}); err != nil {
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
