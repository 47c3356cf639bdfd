package signaling_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/khadga/khadga/turn"
	"github.com/prometheus/client_golang/prometheus"
)

// cardinalityMarker starts every name, path, room, peer id, origin and
// token the cardinality test makes up, so that a label value copied from
// the network is found by a substring search.
const cardinalityMarker = "zqx"

// TestMetricCardinalityIsBounded drives a real server (with its TURN
// server) with input that varies on every round: new users, TURN
// allocations with made-up user names and passwords, unknown
// paths, wrong passwords for made-up accounts, made-up refresh and bot
// tokens, WebSocket upgrades with made-up origins, versions and tokens,
// and connections sending bad JSON, unknown types, signals to made-up
// peers, joins of new rooms and oversized frames. The number of metric
// series must not grow after the first rounds (every label value comes
// from a fixed set), and no label value may hold what the client sent:
// otherwise an attacker grows the registry, and every scrape, without
// bound.
func TestMetricCardinalityIsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := signalingtest.Start(t, signalingtest.Options{TURN: true, TURNConfig: turn.Config{Registerer: reg}, Config: signaling.Config{
		Registerer: reg, Gatherer: reg, RegistrationsPerHour: 10000,
		AllowedOrigins: []string{"https://app.example"},
		// Every round fails logins from 127.0.0.1: no slowing or blocking.
		LoginLimits: auth.LimiterOptions{SlowAfter: 1000, BlockAfter: 2000},
	}})
	const warm, more = 3, 8
	for r := range warm {
		cardinalityRound(t, s, r)
	}
	before := seriesByFamily(t, reg)
	for r := warm; r < warm+more; r++ {
		cardinalityRound(t, s, r)
	}
	after := seriesByFamily(t, reg)
	var grew []string
	for name, n := range after {
		if n > before[name] {
			grew = append(grew, fmt.Sprintf("%s: %d -> %d series", name, before[name], n))
		}
	}
	sort.Strings(grew)
	if len(grew) > 0 {
		t.Errorf("metric series grew with the input after %d rounds, in %d more:\n%s", warm, more, strings.Join(grew, "\n"))
	}
	for _, v := range labelValues(t, reg) {
		if strings.Contains(v, cardinalityMarker) {
			t.Errorf("a label value holds network input: %q", v)
		}
	}
	if after["khadga_hub_errors_total"] == 0 || after["khadga_logins_total"] == 0 || after["khadga_ws_refused_total"] == 0 ||
		after["khadga_turn_auth_failures_total"] == 0 {
		t.Fatalf("the rounds counted nothing; is the registry wired? %v", after)
	}
}

// cardinalityRound sends one round of made-up input, each item named
// with r.
func cardinalityRound(t *testing.T, s *signalingtest.Server, r int) {
	t.Helper()
	name := fmt.Sprintf("%s%d", cardinalityMarker, r)
	for _, p := range []string{"/" + name, "/api/" + name, "/api/rooms/" + name, "/" + name + "/../metrics?x=" + name} {
		resp, err := s.Client.Get(s.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	s.Post(t, "/api/login", map[string]string{"username": name, "password": "wrong password " + name})
	s.Post(t, "/api/refresh", map[string]string{"refresh_token": name})
	s.Post(t, "/api/refresh", map[string]string{"refresh_token": "kbt_" + name})
	s.Post(t, "/api/"+name, map[string]string{"x": name})

	tok := s.User(t, name)
	s.Post(t, "/api/login", map[string]string{"username": name, "password": "wrong password"})
	v1 := []string{proto.Subprotocol}
	for _, d := range []struct {
		h         http.Header
		protocols []string
	}{
		{http.Header{"Authorization": {"Bearer " + tok.AccessToken}, "Origin": {"https://" + name + ".example"}}, v1},
		{http.Header{"Authorization": {"Bearer " + name}}, v1},
		{bearer(tok.AccessToken), []string{"khadga." + name}},
		{bearer(tok.AccessToken), v1}, // accepted, and closed at once
	} {
		dialStatus(t, s, d.h, d.protocols, "resume="+name)
	}

	c := s.Connect(t, tok.AccessToken, url.Values{"x": {name}})
	cardinalityTURN(t, c.Welcome.ICEServers, name)
	c.SendRaw([]byte(`{"type":`))
	c.ExpectError(proto.CodeBadMessage, "")
	c.Send(&proto.Message{Type: name, ID: name})
	c.ExpectError(proto.CodeUnknownType, name)
	c.Join(name)
	c.Send(&proto.Message{Type: proto.TypeSignal, ID: name, To: name, Room: name, Data: []byte(`{"x":"` + name + `"}`)})
	c.ExpectError(proto.CodeUnknownPeer, name)
	c.Conn.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("x"), 1<<17))
	c.ExpectError(proto.CodeTooLarge, "")
	if _, open := c.NextOrClosed(); open {
		t.Fatal("the connection stayed open after an oversized frame")
	}
	waitFor(t, "every connection closed", func() bool { return s.HubStats().Connections == 0 })
}

// cardinalityTURN allocates on the TURN server of ices with made-up
// user names (one malformed, one well-formed with a wrong password) and
// with the right credentials.
func cardinalityTURN(t *testing.T, ices []proto.ICEServer, name string) {
	t.Helper()
	for _, ice := range ices {
		for _, u := range ice.URLs {
			if !strings.HasPrefix(u, "turn:") || !strings.HasSuffix(u, "?transport=udp") {
				continue
			}
			addr := strings.TrimSuffix(strings.TrimPrefix(u, "turn:"), "?transport=udp")
			expiry, _, _ := strings.Cut(ice.Username, ":")
			for _, cred := range [][2]string{{name, name}, {expiry + ":" + name, name}} {
				if turnAllocate(t, addr, cred[0], cred[1]) == nil {
					t.Fatalf("TURN allocated for made-up credentials %q", cred)
				}
			}
			if err := turnAllocate(t, addr, ice.Username, ice.Credential); err != nil {
				t.Fatalf("TURN with the welcome's credentials: %v", err)
			}
			return
		}
	}
	t.Fatalf("no UDP TURN server in %+v", ices)
}

// turnAllocate allocates a relay on the TURN server at addr and closes it.
func turnAllocate(t *testing.T, addr, user, pass string) error {
	t.Helper()
	client := turnClient(t, addr, user, pass)
	defer client.Close()
	relay, err := client.Allocate()
	if err == nil {
		relay.Close()
	}
	return err
}

// seriesByFamily counts the series of each metric family in g.
func seriesByFamily(t *testing.T, g prometheus.Gatherer) map[string]int {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := make(map[string]int, len(mfs))
	for _, mf := range mfs {
		n[mf.GetName()] = len(mf.GetMetric())
	}
	return n
}

// labelValues lists every label value in g.
func labelValues(t *testing.T, g prometheus.Gatherer) []string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var vs []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				vs = append(vs, lp.GetValue())
			}
		}
	}
	return vs
}
