package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/hub"
)

// TestRevocationGap: node a is cut off from NATS while b revokes alice,
// whose session is a's. When a is back:
//
//   - "kept": the stream still has the revocation, which ends alice's
//     session; a finds no gap and checks nothing against the store.
//   - "expired" (the stream keeps revocations for less time than the cut
//     lasts, Config.RevocationReplay), "purged": the stream no longer has
//     it; a cannot know what it missed and has its sessions checked
//     (OnRevocationGap), once.
//   - "made anew": the stream was deleted and made again meanwhile (its
//     sequences start again); a checks its sessions, and reads the new
//     stream from then on.
//
// Here the check only records that it ran (package signaling's
// TestRevocationsMissedPastTheStream has it read the store and end
// sessions).
func TestRevocationGap(t *testing.T) {
	for _, how := range []string{"kept", "expired", "purged", "made anew"} {
		t.Run(how, func(t *testing.T) {
			urls := natstest.Start(t).ClientURL()
			cfg := fastConfig()
			if how == "expired" {
				cfg.RevocationReplay = 200 * time.Millisecond
			}
			a, p, nc := startNodeBehindProxy(t, "a", urls, cfg, hub.Config{})
			b := startNode(t, "b", urls, cfg, hub.Config{})
			checks := make(chan struct{}, 8)
			a.node.OnRevocationGap(func(context.Context) (int, error) {
				checks <- struct{}{}
				return 0, nil
			})
			alice := a.dial("user=alice&login=L1")
			eventually(t, "b to know alice", func() bool { return b.hub.Stats().Remote == 1 })
			seen := revocationsSeen(t, a)
			b.node.CloseUser("ann", proto.CodeRevoked, "before the cut") // a has taken something
			awaitUser(t, seen, "ann")

			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			js, name := b.node.js, revocationStream(b.node.cfg.Subject)
			p.Cut()
			eventually(t, "a to lose NATS", func() bool { return !nc.IsConnected() })
			if how == "made anew" {
				if err := js.DeleteStream(ctx, name); err != nil {
					t.Fatal(err)
				}
				if err := createRevocationStream(ctx, js, b.node.cfg); err != nil {
					t.Fatal(err)
				}
			}
			b.node.CloseUser("alice", proto.CodeRevoked, "user disabled")
			st, err := js.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			switch how {
			case "expired":
				eventually(t, "the stream to drop alice's revocation", func() bool {
					info, err := st.Info(ctx)
					return err == nil && info.State.Msgs == 0
				})
			case "purged":
				if err := st.Purge(ctx); err != nil {
					t.Fatal(err)
				}
			}
			p.Up()
			eventually(t, "a to reconnect", func() bool { return nc.IsConnected() })

			gaps := func() int { return int(testutil.ToFloat64(a.node.gapStats.gaps)) }
			if how == "kept" {
				b.node.CloseUser("zed", proto.CodeRevoked, "marker")
				awaitUser(t, seen, "zed") // a has handled what came before
				expectRevoked(t, alice, "alice's socket, her revocation kept in the stream")
				// The look a's watch takes after the reconnect, taken
				// here for sure.
				if err := a.node.checkRevocationStream(ctx); err != nil {
					t.Fatal(err)
				}
				if n := gaps(); n != 0 || len(checks) != 0 {
					t.Fatalf("%d gaps, %d checks; the stream had all a had not taken", n, len(checks))
				}
				return
			}
			select {
			case <-checks:
			case <-time.After(wait):
				t.Fatal("a never checked its sessions")
			}
			b.node.CloseUser("zed", proto.CodeRevoked, "marker")
			awaitUser(t, seen, "zed") // a reads the stream (the new one, made anew)
			if err := a.node.checkRevocationStream(ctx); err != nil {
				t.Fatal(err)
			}
			if n := gaps(); n != 1 || len(checks) != 0 {
				t.Errorf("%d gaps, %d more checks; want one of each", n, len(checks))
			}
			if n := testutil.ToFloat64(a.node.gapStats.rechecks.WithLabelValues("done")); n != 1 {
				t.Errorf("%v checks counted done, want 1", n)
			}
		})
	}
}

// TestRevocationFeedTook: a message past the one after the node's place
// is a gap; the next one is not; nor is one of a consumer the node has
// replaced.
func TestRevocationFeedTook(t *testing.T) {
	f := revocationFeed{gen: 2, last: 5}
	for _, tc := range []struct {
		gen  int
		seq  uint64
		gap  bool
		last uint64
	}{
		{2, 6, false, 6},
		{2, 9, true, 9},
		{1, 20, false, 9}, // the consumer before: moves nothing
		{2, 10, false, 10},
	} {
		if gap := f.took(tc.gen, tc.seq); gap != tc.gap || f.last != tc.last {
			t.Errorf("took(%d, %d): gap %t, place %d; want %t, %d", tc.gen, tc.seq, gap, f.last, tc.gap, tc.last)
		}
	}
	f.skipTo(15)
	if f.took(2, 16) {
		t.Error("a gap right after the place skipped to")
	}
}
