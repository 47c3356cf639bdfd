package signaling_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/khadga/khadga/internal/metricstest"
	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/admin"
	"github.com/khadga/khadga/signaling/cluster"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestRevocationsMissedPastTheStream: node b is cut off from NATS for
// longer than the revocation stream keeps revocations
// (cluster.Config.RevocationReplay, short here), while node a serves
// ann's sign-out and dan's account being disabled. Their sessions are
// b's. When b is back, the stream no longer has either revocation, and b
// checks its sessions against the store: ann's and dan's end as the
// revocations would have ended them (error revoked with its reason, close
// code 4401), hal's, whose credentials hold, stays. They outlived being
// signed out and disabled for as long as their sockets stayed open.
//
//   - "store readable": b's store connection stayed up (only its cluster
//     link failed).
//   - "store unreadable at first": it is cut too, and comes back after
//     the cluster link: b's check fails, is counted and tried again, and
//     ends nothing until the store answers.
func TestRevocationsMissedPastTheStream(t *testing.T) {
	for _, storeDown := range []bool{false, true} {
		name := "store readable"
		if storeDown {
			name = "store unreadable at first"
		}
		t.Run(name, func(t *testing.T) {
			urls := natstest.Start(t).ClientURL()
			replay := cluster.Config{RevocationReplay: 200 * time.Millisecond}
			a := signalingtest.Start(t, signalingtest.Options{Store: kvNode(t, urls), NATS: urls, Cluster: replay})
			link, storeLink := natstest.NewProxy(t, urls), natstest.NewProxy(t, urls)
			reg := prometheus.NewRegistry()
			bc := replay
			bc.Registerer = reg
			b := signalingtest.Start(t, signalingtest.Options{Store: kvNode(t, storeLink.URL()), NATS: link.URL(), Cluster: bc})
			tokens := map[string]signalingtest.Tokens{}
			conns := map[string]*signalingtest.Client{}
			for _, u := range []string{"ann", "dan", "hal"} {
				a.Register(t, u, password)
				tokens[u] = a.Login(t, u, password)
				conns[u] = b.Connect(t, tokens[u].AccessToken, nil)
			}

			link.Cut()
			if storeDown {
				storeLink.Cut()
			}
			if code, _ := a.Post(t, "/api/logout", map[string]string{"refresh_token": tokens["ann"].RefreshToken}); code != http.StatusNoContent {
				t.Fatalf("logout: %d", code)
			}
			ctx, cancel := context.WithTimeout(context.Background(), signalingtest.Timeout)
			defer cancel()
			if err := adminOf(t, a).SetDisabled(ctx, "dan", true); err != nil {
				t.Fatal(err)
			}
			js, err := jetstream.New(natstest.Connect(t, urls))
			if err != nil {
				t.Fatal(err)
			}
			st, err := js.Stream(ctx, "khadga-revocations")
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the stream to drop both revocations", func() bool {
				info, err := st.Info(ctx)
				return err == nil && info.State.LastSeq >= 2 && info.State.Msgs == 0
			})
			link.Up()

			if storeDown {
				waitFor(t, "b to fail to read the store, and count it", func() bool {
					return metricstest.Value(t, reg, "khadga_cluster_rechecks_total", map[string]string{"result": "store_error"}) >= 1
				})
				for u, c := range conns {
					expectAlive(t, c, u+"'s session, the store unreadable")
				}
				storeLink.Up()
			}
			for u, reason := range map[string]string{"ann": "signed out", "dan": admin.ReasonDisabled} {
				if e := conns[u].ExpectError(proto.CodeRevoked, ""); e.Message != reason {
					t.Errorf("%s: revoked for %q, want %q", u, e.Message, reason)
				}
				if code := signalingtest.CloseCode(conns[u].Closed()); code != proto.CloseRevoked {
					t.Errorf("%s: close code %d, want %d", u, code, proto.CloseRevoked)
				}
			}
			expectAlive(t, conns["hal"], "hal's session, whose credentials hold")
			if n := metricstest.Value(t, reg, "khadga_cluster_recheck_ended_total", nil); n != 2 {
				t.Errorf("%v sessions counted ended by the check, want 2", n)
			}
			if n := metricstest.Value(t, reg, "khadga_cluster_rechecks_total", map[string]string{"result": "done"}); n != 1 {
				t.Errorf("%v checks done, want 1", n)
			}
		})
	}
}

// expectAlive checks that c's session is alive: a ping gets its pong.
func expectAlive(t *testing.T, c *signalingtest.Client, what string) {
	t.Helper()
	c.Send(&proto.Message{Type: proto.TypePing, ID: "alive?"})
	if m := c.Expect(proto.TypePong); m.Ref != "alive?" {
		t.Fatalf("%s: pong for %q", what, m.Ref)
	}
}
