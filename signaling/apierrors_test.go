package signaling_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/metricstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/prometheus/client_golang/prometheus"
)

// TestAPIErrorsAreCounted: a store that fails (here a bbolt file closed
// under the server, as a failing disk would) fails the requests that need
// it with 500, never with the 401 of a wrong password or a dead refresh
// token: those told every user their password was wrong (and counted
// failed logins, and blocked them after a few tries) and signed clients
// out. The failures are counted in khadga_api_errors_total, which an
// alert watches (docs/operations.md, "Alerts"); before, a single node's
// store failures showed only in the log. /readyz says 503 meanwhile.
func TestAPIErrorsAreCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{Registerer: reg, Gatherer: reg}})
	tok := s.User(t, "alice")
	bot, _, err := auth.NewBots(s.Store(), s.Keys(), auth.BotsOptions{}).Mint(auth.BotRequest{
		User: "robot", Role: proto.RoleUser, TTL: time.Hour, Refresh: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Store().Close(); err != nil { // as a disk that fails would
		t.Fatal(err)
	}
	for _, req := range []struct {
		path string
		body map[string]string
	}{
		{"/api/register", map[string]string{"username": "bob", "password": "correct horse battery"}},
		{"/api/login", map[string]string{"username": "alice", "password": "correct horse battery"}},
		{"/api/refresh", map[string]string{"refresh_token": tok.RefreshToken}},
		{"/api/refresh", map[string]string{"refresh_token": bot}},
	} {
		code, body := s.Post(t, req.path, req.body)
		t.Logf("%s with the store closed: %d %s", req.path, code, body)
		if code != http.StatusInternalServerError {
			t.Errorf("%s with the store closed: %d %s, want 500", req.path, code, body)
		}
	}
	resp, err := s.Client.Get(s.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the store closed: %d, want 503", resp.StatusCode)
	}
	if n := metricstest.Value(t, reg, "khadga_api_errors_total", map[string]string{"kind": "internal"}); n != 4 {
		t.Errorf("khadga_api_errors_total{kind=\"internal\"} = %v, want 4", n)
	}
	if n := metricstest.Value(t, reg, "khadga_logins_total", map[string]string{"result": "failed"}); n != 0 {
		t.Errorf("the store's failures counted as %v failed logins", n)
	}
}
