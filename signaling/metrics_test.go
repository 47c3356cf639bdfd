package signaling_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/auth"

	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/prometheus/client_golang/prometheus"
)

func getMetrics(t *testing.T, s *signalingtest.Server, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{Registerer: reg, Gatherer: reg}})
	tok := s.User(t, "alice")
	s.Post(t, "/api/login", map[string]string{"username": "alice", "password": "wrong password"})
	c := s.Connect(t, tok.AccessToken, nil)
	c.Join("lobby")

	code, body := getMetrics(t, s, "")
	if code != http.StatusOK {
		t.Fatalf("/metrics from loopback: %d", code)
	}
	for _, want := range []string{
		`khadga_logins_total{result="ok"} 1`,
		`khadga_logins_total{result="failed"} 1`,
		`khadga_registrations_total 1`,
		`khadga_hub_connections 1`,
		`khadga_hub_rooms 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, tok.AccessToken) || strings.Contains(body, tok.RefreshToken) {
		t.Fatal("/metrics contains a token")
	}
}

func TestMetricsToken(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{Registerer: reg, Gatherer: reg, MetricsToken: "scrape-secret"}})
	if code, body := getMetrics(t, s, ""); code != http.StatusForbidden || !strings.Contains(body, "metrics token") {
		t.Fatalf("no token, from loopback: %d %s, want 403 saying the token is needed", code, body)
	}
	if code, _ := getMetrics(t, s, "wrong"); code != http.StatusForbidden {
		t.Fatalf("wrong token: %d, want 403", code)
	}
	if code, _ := getMetrics(t, s, "scrape-secret"); code != http.StatusOK {
		t.Fatalf("right token: %d, want 200", code)
	}
}

func TestAdminStatus(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{TURN: true, Config: signaling.Config{}})
	user := s.User(t, "alice")
	if code, _ := getStatus(t, s, user.AccessToken); code != http.StatusForbidden {
		t.Fatalf("status for a normal user: %d, want 403", code)
	}
	s.Post(t, "/api/login", map[string]string{"username": "alice", "password": "wrong password"})
	tok, _, err := s.Keys().IssueAccess(auth.Claims{User: "root", Role: proto.RoleAdmin}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c := s.Connect(t, user.AccessToken, nil)
	c.Join("lobby")
	code, body := getStatus(t, s, tok)
	if code != http.StatusOK {
		t.Fatalf("status for an admin: %d %s", code, body)
	}
	var st struct {
		Rooms, Connections int
		RecentFailures     []struct{ Kind, User string } `json:"recent_failures"`
	}
	json.Unmarshal([]byte(body), &st)
	if st.Rooms != 1 || st.Connections != 1 || len(st.RecentFailures) != 1 || st.RecentFailures[0].Kind != "login-failed" {
		t.Fatalf("status %s", body)
	}
}

func getStatus(t *testing.T, s *signalingtest.Server, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/api/admin/status", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestTrustedProxy(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{
		Registerer: reg, Gatherer: reg, TrustedProxies: []string{"127.0.0.1"},
	}})
	get := func(xff ...string) int {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/metrics", nil)
		for _, h := range xff {
			req.Header.Add("X-Forwarded-For", h)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("direct loopback: %d", code)
	}
	// Through the trusted proxy, a remote client is not loopback, and a
	// client cannot pose as loopback by sending the header itself.
	if code := get("203.0.113.9"); code != http.StatusForbidden {
		t.Fatalf("remote client via the proxy: %d, want 403", code)
	}
	if code := get("127.0.0.1, 203.0.113.9"); code != http.StatusForbidden {
		t.Fatalf("spoofed loopback via the proxy: %d, want 403", code)
	}
	// Proxies write a port, brackets, or "unknown": the first two are read,
	// and a hop that cannot be read never passes for loopback.
	for _, hop := range []string{"203.0.113.9:4711", "[2001:db8::1]", "[2001:db8::1]:4711", "unknown", "203.0.113.9, unknown"} {
		if code := get(hop); code != http.StatusForbidden {
			t.Errorf("remote client %q via the proxy: %d, want 403", hop, code)
		}
	}
	// Login failures are charged to the real client address in the audit log.
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/login", strings.NewReader(`{"username":"nobody","password":"wrong password"}`))
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	events, _ := s.Store().AuditLog(1)
	if len(events) != 1 || events[0].Addr != "198.51.100.7" {
		t.Fatalf("audit %+v, want the forwarded address", events)
	}
}

func TestSeparateMetricsListener(t *testing.T) {
	reg := prometheus.NewRegistry()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{Registerer: reg, Gatherer: reg, MetricsListener: ln}})
	if code, _ := getMetrics(t, s, ""); code != http.StatusNotFound {
		t.Fatalf("/metrics on the main listener: %d, want 404", code)
	}
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "khadga_hub_connections") {
		t.Fatalf("/metrics on its own listener: %d", resp.StatusCode)
	}
}
