package signaling_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/testlog"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/prometheus/client_golang/prometheus"
)

// cspDirective returns the sources of one directive of a CSP header.
func cspDirective(csp, name string) []string {
	for _, d := range strings.Split(csp, ";") {
		f := strings.Fields(d)
		if len(f) > 0 && f[0] == name {
			return f[1:]
		}
	}
	return nil
}

// TestCSPConnectSources: pages may connect to this server, its public URL
// and the configured origins only, never to "ws:"/"wss:" (any host), and a
// hostile Host header adds nothing (issue 14, point 8).
func TestCSPConnectSources(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{
		PublicURL:      "https://chat.example.org",
		AllowedOrigins: []string{"https://app.example.net", "http://127.0.0.1:9999"},
	}})
	host := strings.TrimPrefix(s.URL, "http://")
	for _, tc := range []struct {
		name, host string
		want       []string
	}{
		{"own host", "", []string{"'self'", "https://chat.example.org", "wss://chat.example.org",
			"https://app.example.net", "wss://app.example.net", "http://127.0.0.1:9999", "ws://127.0.0.1:9999", "ws://" + host}},
		{"hostile host", "x;script-src", []string{"'self'", "https://chat.example.org", "wss://chat.example.org",
			"https://app.example.net", "wss://app.example.net", "http://127.0.0.1:9999", "ws://127.0.0.1:9999"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, s.URL+"/", nil)
			if tc.host != "" {
				req.Host = tc.host
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			csp := resp.Header.Get("Content-Security-Policy")
			if got := cspDirective(csp, "connect-src"); !slices.Equal(got, tc.want) {
				t.Errorf("connect-src %q, want %q (CSP %q)", got, tc.want, csp)
			}
			if strings.Count(csp, "script-src") != 1 {
				t.Errorf("the Host header changed the CSP: %q", csp)
			}
		})
	}
}

// TestEmailLinksUsePublicURL: with SMTP configured the server refuses to
// start without a public URL, and a registration that sends another Host
// still gets a link to the public URL (issue 14, point 4).
func TestEmailLinksUsePublicURL(t *testing.T) {
	_, err := signaling.New(signaling.Config{DataDir: t.TempDir(),
		SMTPURL: "smtp://127.0.0.1:25", SMTPFrom: "khadga@example.org"}, nil)
	if err == nil || !strings.Contains(err.Error(), "needs the public URL (--public-url") {
		t.Fatalf("New with SMTP and no public URL: %v", err)
	}

	capture, smtpAddr := startSMTP(t)
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{
		SMTPURL: "smtp://" + smtpAddr, SMTPFrom: "khadga@example.org", PublicURL: "https://chat.example.org/",
	}})
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/register",
		strings.NewReader(`{"username":"hank","password":"`+password+`","email":"hank@example.org"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Host = "attacker.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %d", resp.StatusCode)
	}
	msg := capture.nextMail(t)
	if strings.Contains(msg, "attacker.example") || !strings.Contains(msg, "https://chat.example.org/api/verify-email?") {
		t.Fatalf("the link does not use the public URL:\n%s", msg)
	}
}

// post sends body to path with the given headers (pairs) and returns the
// status and the Retry-After header; unlike Server.Post it is safe to call
// from many goroutines.
func post(s *signalingtest.Server, path, body string, header ...string) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, s.URL+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), nil
}

// TestPasswordWorkBounded: 24 registrations and 24 logins at once, each
// asking for argon2id's 19 MiB, keep the heap within a few hashes' worth:
// at most PasswordWorkers run, a few wait, the others get 503 at once. The
// limits are lifted so that only the work bound is tested. Before, 48 such
// requests took the heap to 914 MiB (issue 14, point 1).
func TestPasswordWorkBounded(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{
		Password: auth.DefaultParams, PasswordWorkers: 2, RegistrationsPerHour: 1000,
		LoginLimits: auth.LimiterOptions{SlowAfter: 10_000, BlockAfter: 20_000},
	}})
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // samples the heap until stop
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for i := range 48 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path, body := "/api/register", fmt.Sprintf(`{"username":"crowd%d","password":"%s"}`, i, password)
			if i%2 == 1 {
				path, body = "/api/login", `{"username":"crowd0","password":"not the password"}`
			}
			code, retry, err := post(s, path, body)
			if err != nil {
				t.Error(err)
				return
			}
			if code == http.StatusServiceUnavailable && retry == "" {
				t.Error("503 without Retry-After")
			}
			mu.Lock()
			statuses[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	grown := (peak.Load() - min(base, peak.Load())) >> 20
	t.Logf("answers %v; heap grew by %d MiB at its peak", statuses, grown)
	if bound := uint64(8 * 19); grown > bound {
		t.Errorf("the heap grew by %d MiB under 48 concurrent password requests, want at most %d (a few 19 MiB hashes)", grown, bound)
	}
	// Which requests get a worker is up to the scheduler: logins (401,
	// the work done for a wrong password) may take every slot.
	if statuses[http.StatusCreated]+statuses[http.StatusUnauthorized] == 0 || statuses[http.StatusServiceUnavailable] == 0 {
		t.Errorf("answers %v: want some requests hashed (201 or 401) and some 503", statuses)
	}
	for code := range statuses {
		if code != http.StatusCreated && code != http.StatusUnauthorized && code != http.StatusServiceUnavailable {
			t.Errorf("unexpected answer %d", code)
		}
	}
}

// TestRegistrationRateLimit: an address (IPv6: a /64) may create only so
// many accounts an hour; another address is not affected (issue 14,
// point 1). Clients are told apart by X-Forwarded-For from a trusted proxy.
func TestRegistrationRateLimit(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{
		RegistrationsPerHour: 3, TrustedProxies: []string{"127.0.0.1"},
	}})
	register := func(name, from string) (int, string) {
		t.Helper()
		code, retry, err := post(s, "/api/register", `{"username":"`+name+`","password":"`+password+`"}`, "X-Forwarded-For", from)
		if err != nil {
			t.Fatal(err)
		}
		return code, retry
	}
	for i := range 3 {
		if code, _ := register(fmt.Sprint("v4user", i), "198.51.100.7"); code != http.StatusCreated {
			t.Fatalf("registration %d: %d", i, code)
		}
	}
	if code, retry := register("v4user3", "198.51.100.7"); code != http.StatusTooManyRequests || retry == "" {
		t.Fatalf("4th registration from one address: %d (Retry-After %q), want 429", code, retry)
	}
	if code, _ := register("v4other", "198.51.100.8"); code != http.StatusCreated {
		t.Fatalf("another address: %d", code)
	}
	for i := range 3 {
		if code, _ := register(fmt.Sprint("v6user", i), fmt.Sprintf("2001:db8:1:2::%x", i+1)); code != http.StatusCreated {
			t.Fatalf("IPv6 registration %d: %d", i, code)
		}
	}
	if code, _ := register("v6user3", "2001:db8:1:2:ffff::1"); code != http.StatusTooManyRequests {
		t.Fatalf("4th registration from one /64: %d, want 429", code)
	}
	if code, _ := register("v6other", "2001:db8:1:3::1"); code != http.StatusCreated {
		t.Fatalf("another /64: %d", code)
	}
}

// TestTOTPDisableIsLimited: /api/totp/disable checks a password, so it
// goes through the login limits: guessing there ends in 429, as at login
// (issue 14, point 2).
func TestTOTPDisableIsLimited(t *testing.T) {
	limits := auth.LimiterOptions{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{LoginLimits: limits}})
	tok := s.User(t, "ivy")
	last := 0
	for i := 0; i < 30 && last != http.StatusTooManyRequests; i++ {
		code, _, err := post(s, "/api/totp/disable", `{"password":"guess number `+fmt.Sprint(i)+`","code":"123456"}`,
			"Authorization", "Bearer "+tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		last = code
	}
	if last != http.StatusTooManyRequests {
		t.Fatalf("30 wrong passwords at /api/totp/disable: last answer %d, want 429", last)
	}
	// The account is locked for login too: the same limits.
	if code, _ := s.Post(t, "/api/login", map[string]string{"username": "ivy", "password": password}); code != http.StatusTooManyRequests {
		t.Fatalf("login after guessing at totp/disable: %d, want 429", code)
	}
}

// TestTicketsPerUser: one user cannot take every WebSocket ticket; after
// its share it gets 429 while others still get theirs (issue 14, point 3).
func TestTicketsPerUser(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{TicketsPerUser: 4}})
	mallory, ann := s.User(t, "mallory"), s.User(t, "ann")
	ticket := func(tok string) (int, string) {
		t.Helper()
		code, retry, err := post(s, "/api/ws-ticket", "", "Authorization", "Bearer "+tok)
		if err != nil {
			t.Fatal(err)
		}
		return code, retry
	}
	for i := range 4 {
		if code, _ := ticket(mallory.AccessToken); code != http.StatusOK {
			t.Fatalf("ticket %d: %d", i, code)
		}
	}
	for range 1000 {
		if code, retry := ticket(mallory.AccessToken); code != http.StatusTooManyRequests || retry == "" {
			t.Fatalf("a ticket past the user's share: %d (Retry-After %q), want 429", code, retry)
		}
	}
	if code, _ := ticket(ann.AccessToken); code != http.StatusOK {
		t.Fatalf("another user after the flood: %d", code)
	}
}

// TestLimiterKeysValidatedFirst: junk usernames (here 10 KiB each) never
// become limiter keys; only the address is counted (issue 14, point 7).
func TestLimiterKeysValidatedFirst(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{
		Registerer: reg, Gatherer: reg,
		LoginLimits: auth.LimiterOptions{SlowAfter: 10_000, BlockAfter: 20_000},
	}})
	for i := range 100 {
		name := fmt.Sprint(i) + strings.Repeat("X", 10<<10)
		if code, _, err := post(s, "/api/login", `{"username":"`+name+`","password":"whatever it is"}`); err != nil || code != http.StatusUnauthorized {
			t.Fatalf("login %d: %d %v", i, code, err)
		}
	}
	if n := gaugeValue(t, reg, "khadga_login_limiter_keys"); n != 1 {
		t.Fatalf("the limiter tracks %v keys after 100 junk usernames from one address, want 1", n)
	}
}

func gaugeValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) == 1 {
			return mf.Metric[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// TestLoginLimitSparesUntouchedAccounts: behind a proxy that is not
// trusted, everyone shares its address. Ten failed logins for made-up
// names block that address, yet a correct password of an account nobody
// attacked still logs in (after the limiter's delay), and the server warns
// that --trust-proxy is missing (issue 14, point 5).
func TestLoginLimitSparesUntouchedAccounts(t *testing.T) {
	logs := &testlog.Buffer{}
	limits := auth.LimiterOptions{BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond}
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{
		LoginLimits: limits, Logger: slog.New(slog.NewTextHandler(logs, nil)),
	}})
	s.Register(t, "alice", password)
	s.Register(t, "bob", password)
	login := func(user, pw string) int {
		t.Helper()
		code, _, err := post(s, "/api/login", `{"username":"`+user+`","password":"`+pw+`"}`)
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	for i := range 10 {
		if code := login(fmt.Sprint("madeup", i), "wrong password"); code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, code)
		}
	}
	if code := login("madeup0", "wrong password"); code != http.StatusTooManyRequests {
		t.Fatalf("the address is not blocked for a name it failed on: %d", code)
	}
	if code := login("alice", password); code != http.StatusOK {
		t.Fatalf("alice's correct password behind the blocked address: %d, want 200", code)
	}
	if code := login("bob", "a wrong guess"); code != http.StatusUnauthorized {
		t.Fatalf("one guess at bob: %d, want 401", code)
	}
	if code := login("bob", password); code != http.StatusTooManyRequests {
		t.Fatalf("bob after a failure from the blocked address: %d, want 429", code)
	}
	if !strings.Contains(logs.String(), "no reverse proxy is trusted") {
		t.Errorf("no warning about --trust-proxy in the logs:\n%s", logs.String())
	}
}
