package storetest

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/store"
)

func testAuditLog(t *testing.T, c Config) {
	s, _ := open(t, c, Limits{AuditMax: 32})
	const total = 200
	for i := range total {
		if err := s.Audit(store.AuditEvent{Time: t0.Add(time.Duration(i) * time.Second), Kind: "login",
			User: fmt.Sprint("u", i), Addr: "192.0.2.1"}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := s.AuditLog(5)
	if err != nil || len(evs) != 5 {
		t.Fatalf("AuditLog(5) = %d events, %v", len(evs), err)
	}
	if evs[0].User != fmt.Sprint("u", total-1) || evs[4].User != fmt.Sprint("u", total-5) || evs[0].Seq != total ||
		!evs[0].Time.Equal(t0.Add((total-1)*time.Second)) || evs[0].Addr != "192.0.2.1" {
		t.Fatalf("not newest first: %+v", evs)
	}
	all, err := s.AuditLog(1 << 30)
	if err != nil {
		t.Fatal(err)
	}
	// Bounded: at least AuditMax and at most AuditMax + 1/16 slack survive.
	if len(all) < 32 || len(all) > 35 {
		t.Fatalf("log holds %d events, want 32..35", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq != all[i-1].Seq-1 {
			t.Fatalf("gap in kept events at %d: %d then %d", i, all[i-1].Seq, all[i].Seq)
		}
	}
	if def, _ := s.AuditLog(0); len(def) != len(all) { // default page 100 > kept
		t.Fatalf("AuditLog(0) = %d events, want %d", len(def), len(all))
	}
}

func testAuditTruncatesAndStamps(t *testing.T, c Config) {
	s, _ := open(t, c, Limits{})
	if evs, err := s.AuditLog(10); err != nil || len(evs) != 0 {
		t.Fatalf("empty AuditLog = %+v, %v", evs, err)
	}
	long := string(bytes.Repeat([]byte("é"), 2000)) // 4000 bytes
	if err := s.Audit(store.AuditEvent{Kind: "x", User: long, Detail: long}); err != nil {
		t.Fatal(err)
	}
	evs, err := s.AuditLog(1)
	if err != nil || len(evs) != 1 {
		t.Fatal(evs, err)
	}
	ev := evs[0]
	if len(ev.User) != 256 || len(ev.Detail) != 2048 || ev.Time.IsZero() || ev.Seq != 1 {
		t.Fatalf("event not bounded/stamped: user %d bytes, detail %d bytes, time %v, seq %d",
			len(ev.User), len(ev.Detail), ev.Time, ev.Seq)
	}
	if ev.User != long[:256] { // 256 is even, so no rune is split
		t.Errorf("user truncated wrongly")
	}
}
