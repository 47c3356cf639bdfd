package hub

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/prometheus/client_golang/prometheus"
)

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	_, err := New(Config{SendQueue: -1, PongWait: time.Second, PingPeriod: 2 * time.Second, AbsentQueue: 500})
	if err == nil {
		t.Fatal("New accepted a bad config")
	}
	for _, want := range []string{"SendQueue must be positive", "PingPeriod", "AbsentQueue (500) must not exceed SendQueue"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestWelcomeCarriesICEServersAlsoOnResume(t *testing.T) {
	forModes(t, testWelcomeCarriesICEServersAlsoOnResume)
}

func testWelcomeCarriesICEServersAlsoOnResume(t *testing.T, mode serverMode) {
	calls := make(chan string, 4)
	exp := time.Unix(1_900_000_000, 0)
	ts := newTestServer(t, Config{ICEServers: func(user string) ([]proto.ICEServer, time.Time) {
		calls <- user
		return []proto.ICEServer{{URLs: []string{"turn:127.0.0.1:3478"}, Username: "u:" + user, Credential: "c"}}, exp
	}}, mode)
	alice := ts.dial("user=alice")
	w := alice.welcome
	if len(w.ICEServers) != 1 || w.ICEServers[0].Username != "u:alice" || w.ICEServersExpire != exp.Unix() || w.ResumeWindow != 30 {
		t.Fatalf("welcome %+v", w)
	}
	drop(t, ts, alice)
	back := ts.dial("user=alice&resume=" + url.QueryEscape(alice.welcome.ResumeToken))
	if !back.welcome.Resumed || len(back.welcome.ICEServers) != 1 {
		t.Fatalf("resume welcome %+v", back.welcome)
	}
	if len(calls) != 2 {
		t.Fatalf("ICEServers called %d times, want 2 (fresh credentials on resume)", len(calls))
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	ts := newTestServer(t, Config{Registerer: reg})
	alice := ts.dial("user=alice")
	alice.sendRaw(`{"type":"nope"}`)
	alice.expectError(proto.CodeUnknownType, "")
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += "," + l.GetName() + "=" + l.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				got[name] = g.GetValue()
			} else if c := m.GetCounter(); c != nil {
				got[name] = c.GetValue()
			}
		}
	}
	if got["khadga_hub_sessions"] != 1 || got["khadga_hub_connections"] != 1 || got["khadga_hub_errors_total,code=unknown_type"] != 1 {
		t.Fatalf("metrics %v", got)
	}
}
