package signaling_test

import (
	"encoding/json"
	"io"
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
	if code, _ := getMetrics(t, s, ""); code != http.StatusForbidden {
		t.Fatalf("no token: %d, want 403", code)
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
