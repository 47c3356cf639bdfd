//go:build cgo

package recorder

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/khadga/khadga/internal/cutproxy"
	"github.com/khadga/khadga/internal/metricstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/admin"
	"github.com/khadga/khadga/signaling/signalingtest"
)

func counter(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	return metricstest.Value(t, reg, name, map[string]string{label: value})
}

// TestE2ERecorderRenewsItsToken: a recorder with a bot refresh token
// (`khadga token --refresh`) whose access tokens live 3 s renews them
// before they expire and goes on recording: after several lifetimes its
// signaling connection drops and comes back (through a proxy the test
// cuts) with a renewed token, never refused, and frames keep coming.
func TestE2ERecorderRenewsItsToken(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{BotAccessTTL: 3 * time.Second, Registerer: reg}})
	a, err := admin.Dial(filepath.Join(s.DataDir, "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tok, err := a.MintToken(ctx, admin.TokenRequest{User: "rec", Role: proto.RoleRecorder, Rooms: []string{"studio"}, Refresh: true})
	if err != nil {
		t.Fatal(err)
	}
	proxy := cutproxy.New(t, strings.TrimPrefix(s.URL, "http://"))
	rec := startRecorder(t, s, "studio", t.TempDir(), func(c *Config) {
		c.Server, c.Token = "http://"+proxy.Addr(), tok.Token
	})
	_, alice := joinPeer(t, s, "alice", "studio", rec.self.Peer)
	publish(t, alice, rec.self.Peer)
	waitFrames(t, rec, "alice", 30)

	// Three lifetimes of 3 s: the recorder must have renewed at least
	// twice (each at 80% of a lifetime).
	renewals := func() float64 { return counter(t, reg, "khadga_token_refreshes_total", "result", "ok") }
	deadline := time.Now().Add(e2eTimeout)
	for renewals() < 3 { // the first trade, then two renewals
		if time.Now().After(deadline) {
			t.Fatalf("%v token trades in %v", renewals(), e2eTimeout)
		}
		time.Sleep(100 * time.Millisecond) // polling a server counter
	}
	if list, _ := a.ListTokens(ctx); len(list) != 1 || list[0].LastUsed.IsZero() {
		t.Fatalf("token list %+v", list)
	}
	resumes := counter(t, reg, "khadga_hub_resumes_total", "result", "ok")
	proxy.Cut() // a network drop: the recorder reconnects
	proxy.Up()
	for counter(t, reg, "khadga_hub_resumes_total", "result", "ok") <= resumes {
		if time.Now().After(deadline) {
			t.Fatal("the recorder did not come back after the drop")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := counter(t, reg, "khadga_ws_refused_total", "reason", "auth"); n != 0 {
		t.Fatalf("%v connections refused for their token: the recorder came back with an expired one", n)
	}
	before := waitFrames(t, rec, "alice", 0)
	if got := waitFrames(t, rec, "alice", before+30); got < before+30 {
		t.Fatalf("recording stalled after the renewals: %d frames, then %d", before, got)
	}
	rec.stop(t)
}
