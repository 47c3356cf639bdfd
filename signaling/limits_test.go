package signaling_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// Behind a load balancer one client's requests land on every node: the
// login limits and the per-address budgets are the cluster's, not each
// node's. Three failed logins on each of two nodes block the account (and
// the address) on both at six, and registrations from one address stop at
// the budget wherever they land. News the nodes cannot read is dropped
// and counted.
func TestLimitsAcrossNodes(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	node := func() (*signalingtest.Server, *prometheus.Registry) {
		reg := prometheus.NewRegistry()
		cfg := signaling.Config{Registerer: reg, RegistrationsPerHour: 3,
			LoginLimits: auth.LimiterOptions{SlowAfter: 100, BlockAfter: 6}}
		return signalingtest.Start(t, signalingtest.Options{Config: cfg, Store: kvNode(t, urls), NATS: urls}), reg
	}
	a, regA := node()
	b, regB := node()
	a.Register(t, "pat", password) // the address's first registration
	wrong := map[string]string{"username": "pat", "password": "not the password"}
	for _, s := range []*signalingtest.Server{a, b, a, b, a, b} {
		code, body := s.Post(t, "/api/login", wrong)
		assertError(t, code, body, http.StatusUnauthorized, "unauthorized")
	}
	waitNews(t, regA, "heard", 6) // b's three attempts: each started and failed
	waitNews(t, regB, "heard", 7) // a's registration and three attempts
	right := map[string]string{"username": "pat", "password": password}
	for name, s := range map[string]*signalingtest.Server{"a": a, "b": b} {
		code, body := s.Post(t, "/api/login", right)
		if code != http.StatusTooManyRequests {
			t.Errorf("node %s: login after 3 failures here and 3 on the other node: %d %s, want 429", name, code, body)
		}
	}

	for i, s := range []*signalingtest.Server{b, a} { // the address's second and third
		code, body := s.Post(t, "/api/register", map[string]string{"username": "quinn" + string(rune('1'+i)), "password": password})
		if code != http.StatusCreated && code != http.StatusOK {
			t.Fatalf("registration %d: %d %s", i+2, code, body)
		}
	}
	waitNews(t, regA, "heard", 7)
	waitNews(t, regB, "heard", 8)
	code, body := b.Post(t, "/api/register", map[string]string{"username": "quinn3", "password": password})
	assertError(t, code, body, http.StatusTooManyRequests, "rate_limited")

	// Unreadable news, a limiter no node has, a key no request makes.
	nc := natstest.Connect(t, urls)
	for _, junk := range []string{`not json`, `{"l":"nope","k":"x"}`, `{"l":"register"}`,
		`{"l":"register","k":"` + string(make([]byte, 300)) + `"}`, `{"l":"login","u":"not a name!","o":1}`,
		`{"l":"login","u":"pat","o":9}`} {
		if err := nc.Publish("khadga.tell.limits.stranger", []byte(junk)); err != nil {
			t.Fatal(err)
		}
	}
	waitNews(t, regA, "bad", 6)
	if got := newsCount(t, regA, "heard"); got != 7 {
		t.Errorf("node a counted %v pieces of news, want 7: junk was counted", got)
	}
}

// waitNews waits until the node of reg has at least want of its limiters'
// news counted as what.
func waitNews(t *testing.T, reg *prometheus.Registry, what string, want float64) {
	t.Helper()
	deadline := time.Now().Add(signalingtest.Timeout)
	for newsCount(t, reg, what) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s news: %v, want %v", what, newsCount(t, reg, what), want)
		}
		time.Sleep(10 * time.Millisecond) // polls a counter; the wait ends on the count
	}
}

func newsCount(t *testing.T, reg *prometheus.Registry, what string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "khadga_cluster_limit_news_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "what" && l.GetValue() == what {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// A guess in flight on one node counts on the others: guesses fired in
// parallel at several nodes meet the limit as they would on one.
func TestLoginInFlightAcrossNodes(t *testing.T) {
	urls := natstest.Start(t).ClientURL()
	node := func() (*signalingtest.Server, *prometheus.Registry) {
		reg := prometheus.NewRegistry()
		cfg := signaling.Config{Registerer: reg,
			LoginLimits: auth.LimiterOptions{SlowAfter: 1, BlockAfter: 2, BaseDelay: 3 * time.Second}}
		return signalingtest.Start(t, signalingtest.Options{Config: cfg, Store: kvNode(t, urls), NATS: urls}), reg
	}
	a, _ := node()
	b, regB := node()
	a.Register(t, "pat", password)
	wrong := map[string]string{"username": "pat", "password": "not the password"}
	code, body := a.Post(t, "/api/login", wrong)
	assertError(t, code, body, http.StatusUnauthorized, "unauthorized")
	waitNews(t, regB, "heard", 3) // the registration, the attempt's start and failure

	// The second guess on a waits out its delay (one failure: slowed), in
	// flight meanwhile.
	done := make(chan int, 1)
	go func() {
		code, _ := a.Post(t, "/api/login", wrong)
		done <- code
	}()
	waitNews(t, regB, "heard", 4)
	code, body = b.Post(t, "/api/login", wrong)
	assertError(t, code, body, http.StatusTooManyRequests, "rate_limited")
	if code := <-done; code != http.StatusUnauthorized {
		t.Errorf("the guess in flight on a: %d, want 401", code)
	}
}

// TestAccountWritesRateLimited: the store writes a signed-in user can
// repeat without a password are limited: a sign-in's refreshes, and a
// user's two-factor enrolments, each 20 in a row and then one a minute,
// answered 429 with Retry-After. A refused refresh changes nothing (the
// token it presented is still the current one), and another sign-in of
// the same user has a budget of its own.
func TestAccountWritesRateLimited(t *testing.T) {
	clk := &clock{now: time.Now()}
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{Now: clk.Now}})
	tok := s.User(t, "ann")
	other := s.Login(t, "ann", password)
	for range 20 {
		tok = refresh(t, s, tok.RefreshToken, http.StatusOK)
	}
	code, body := s.Post(t, "/api/refresh", map[string]string{"refresh_token": tok.RefreshToken})
	assertError(t, code, body, http.StatusTooManyRequests, "rate_limited")
	refresh(t, s, other.RefreshToken, http.StatusOK) // a budget of its own
	clk.add(time.Minute)
	refresh(t, s, tok.RefreshToken, http.StatusOK) // still current: the 429 changed nothing

	bearer := []string{"Authorization", "Bearer " + other.AccessToken}
	for i := range 20 {
		if code, body := s.Post(t, "/api/totp/enroll", "", bearer...); code != http.StatusOK {
			t.Fatalf("enrolment %d: %d %s", i, code, body)
		}
	}
	code, body = s.Post(t, "/api/totp/enroll", "", bearer...)
	assertError(t, code, body, http.StatusTooManyRequests, "rate_limited")
}
