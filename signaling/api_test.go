package signaling_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/khadga/khadga/signaling/store"
)

const password = "correct horse battery"

func TestAccountLifecycle(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	s.Register(t, "alice", password)

	t.Run("duplicate user", func(t *testing.T) {
		code, body := s.Post(t, "/api/register", map[string]string{"username": "alice", "password": password})
		assertError(t, code, body, http.StatusConflict, "exists")
	})
	t.Run("invalid input", func(t *testing.T) {
		for _, tc := range []struct{ user, pw, want string }{
			{"al", password, "username must be 3 to 32"},
			{"Alice", password, "only a-z"},
			{"bob", "short", "at least 10"},
		} {
			code, body := s.Post(t, "/api/register", map[string]string{"username": tc.user, "password": tc.pw})
			assertError(t, code, body, http.StatusBadRequest, "bad_request")
			if !strings.Contains(string(body), tc.want) {
				t.Errorf("register %q/%q: body %s does not say %q", tc.user, tc.pw, body, tc.want)
			}
		}
	})
	t.Run("wrong password and unknown user answer alike", func(t *testing.T) {
		c1, b1 := s.Post(t, "/api/login", map[string]string{"username": "alice", "password": "wrong password!"})
		c2, b2 := s.Post(t, "/api/login", map[string]string{"username": "nobody", "password": "wrong password!"})
		assertError(t, c1, b1, http.StatusUnauthorized, "unauthorized")
		if c1 != c2 || string(b1) != string(b2) {
			t.Fatalf("answers differ: %d %s vs %d %s", c1, b1, c2, b2)
		}
	})

	tok := s.Login(t, "alice", password)
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.ExpiresIn != 15*60 {
		t.Fatalf("login answer %+v", tok)
	}

	t.Run("refresh rotates and reuse revokes the family", func(t *testing.T) {
		next := refresh(t, s, tok.RefreshToken, http.StatusOK)
		if next.RefreshToken == tok.RefreshToken {
			t.Fatal("refresh token did not rotate")
		}
		refresh(t, s, tok.RefreshToken, http.StatusUnauthorized) // reuse of the old one
		refresh(t, s, next.RefreshToken, http.StatusUnauthorized)
	})
	t.Run("logout revokes the family", func(t *testing.T) {
		t2 := s.Login(t, "alice", password)
		code, body := s.Post(t, "/api/logout", map[string]string{"refresh_token": t2.RefreshToken})
		if code != http.StatusNoContent {
			t.Fatalf("logout: %d %s", code, body)
		}
		refresh(t, s, t2.RefreshToken, http.StatusUnauthorized)
	})
}

func refresh(t *testing.T, s *signalingtest.Server, rt string, want int) signalingtest.Tokens {
	t.Helper()
	code, body := s.Post(t, "/api/refresh", map[string]string{"refresh_token": rt})
	if code != want {
		t.Fatalf("refresh: %d %s, want %d", code, body, want)
	}
	var tok signalingtest.Tokens
	json.Unmarshal(body, &tok)
	return tok
}

func assertError(t *testing.T, code int, body []byte, wantStatus int, wantCode string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if code != wantStatus || e.Error.Code != wantCode || e.Error.Message == "" {
		t.Fatalf("got %d %s, want %d with code %q and a message", code, body, wantStatus, wantCode)
	}
}

func TestBadBodies(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"truncated", `{"username":"al`, 400, "bad_request"},
		{"unknown field", `{"username":"alice","password":"0123456789","admin":true}`, 400, "bad_request"},
		{"wrong type", `{"username":5,"password":"0123456789"}`, 400, "bad_request"},
		{"two objects", `{"username":"alice","password":"0123456789"}{}`, 400, "bad_request"},
		{"not utf8", "{\"username\":\"\xff\xfe\",\"password\":\"0123456789\"}", 400, "bad_request"},
		{"huge", `{"username":"` + strings.Repeat("a", 1<<20) + `"}`, 413, "too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := s.Post(t, "/api/register", tc.body)
			assertError(t, code, body, tc.status, tc.code)
		})
	}
	if users, _ := s.Store().ListUsers(); len(users) != 0 {
		t.Fatalf("bad bodies created users: %+v", users)
	}
}

func TestLoginRateLimit(t *testing.T) {
	// Short slow-down delays keep the test fast; the counts are the defaults.
	limits := auth.LimiterOptions{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{LoginLimits: limits}})
	s.Register(t, "carol", password)
	var last int
	var retryAfter string
	for i := 0; i < 30 && last != http.StatusTooManyRequests; i++ {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/login", strings.NewReader(`{"username":"carol","password":"not the password"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		last, retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
	}
	if last != http.StatusTooManyRequests || retryAfter == "" {
		t.Fatalf("password guessing never hit 429 with Retry-After (last %d, Retry-After %q)", last, retryAfter)
	}
	// Even the right password is refused while the account is locked.
	code, _ := s.Post(t, "/api/login", map[string]string{"username": "carol", "password": password})
	if code != http.StatusTooManyRequests {
		t.Fatalf("login during lockout: %d, want 429", code)
	}
}

func TestRestartKeepsUsers(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	s.Register(t, "dave", password)
	old := s.Login(t, "dave", password)
	dir := s.DataDir
	if err := s.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, "khadga.db"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("store file: %v, mode %v, want 0600", err, fi.Mode())
	}
	s2 := signalingtest.Start(t, signalingtest.Options{DataDir: dir})
	s2.Login(t, "dave", password)
	// Tokens signed before the restart still verify: the keys are in the store.
	c := s2.Connect(t, old.AccessToken, nil)
	if c.Welcome.User != "dave" {
		t.Fatalf("welcome user %q", c.Welcome.User)
	}
}

func TestProbes(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(s.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("%s: security headers missing: %v", p, resp.Header)
		}
	}
}

// flakyUsers is a store whose next GetUser (fail), GetFamily
// (failFamily) or DeleteUser (failDelete) fails as an unreachable
// JetStream does, once armed.
type flakyUsers struct {
	store.Backend
	fail, failFamily, failDelete atomic.Bool
}

func (f *flakyUsers) DeleteUser(name string) ([]string, error) {
	if f.failDelete.CompareAndSwap(true, false) {
		return nil, fmt.Errorf("%w: injected: no answer from JetStream in time", store.ErrUnavailable)
	}
	return f.Backend.DeleteUser(name)
}

func (f *flakyUsers) GetFamily(id string) (store.Family, error) {
	if f.failFamily.CompareAndSwap(true, false) {
		return store.Family{}, fmt.Errorf("%w: injected: no answer from JetStream in time", store.ErrUnavailable)
	}
	return f.Backend.GetFamily(id)
}

func (f *flakyUsers) GetUser(name string) (store.User, error) {
	if f.fail.CompareAndSwap(true, false) {
		return store.User{}, fmt.Errorf("%w: injected: no answer from JetStream in time", store.ErrUnavailable)
	}
	return f.Backend.GetUser(name)
}

// openBolt opens a store in a temporary directory, for a test that wraps
// it to inject a fault.
func openBolt(t *testing.T) *store.Store {
	t.Helper()
	bs, err := store.Open(filepath.Join(t.TempDir(), "khadga.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	return bs
}

// TestRefreshStoreHiccup: a refresh that fails because the store cannot
// be reached answers 503 "nothing was changed, try again", and that is
// true: the retry it asks for works, and the family is neither rotated to
// a secret nobody received nor revoked as replayed. A logout in the same
// state answers 503 too, not the 401 of a bad token (after which a client
// would believe its sign-in ended).
func TestRefreshStoreHiccup(t *testing.T) {
	bolt := openBolt(t)
	st := &flakyUsers{Backend: bolt}
	s := signalingtest.Start(t, signalingtest.Options{Store: st})
	s.Register(t, "ann", password)
	tok := s.Login(t, "ann", password)

	st.fail.Store(true)
	code, body := s.Post(t, "/api/refresh", map[string]string{"refresh_token": tok.RefreshToken})
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "nothing was changed") {
		t.Fatalf("refresh while the store is unreachable: %d %s, want 503 nothing was changed", code, body)
	}
	next := refresh(t, s, tok.RefreshToken, http.StatusOK)
	f, err := bolt.GetFamily(sidOf(t, s, tok.AccessToken))
	if err != nil || f.Revoked || f.Generation != 1 {
		t.Fatalf("family after the hiccup and one retry: %+v, %v; want live, generation 1", f, err)
	}

	st.failFamily.Store(true)
	if code, body := s.Post(t, "/api/logout", map[string]string{"refresh_token": next.RefreshToken}); code != http.StatusServiceUnavailable {
		t.Fatalf("logout while the store is unreachable: %d %s, want 503", code, body)
	}
	if code, body := s.Post(t, "/api/logout", map[string]string{"refresh_token": next.RefreshToken}); code != http.StatusNoContent {
		t.Fatalf("logout retried: %d %s, want 204", code, body)
	}
}

// TestRefreshWithTheSid: the sign-in's id, which every access token
// carries (claim sid) and anyone who sees one can read, with a made-up
// secret is no refresh token: refused, and the owner's sign-in goes on.
// It used to count as the replay of an old token and sign the owner out.
func TestRefreshWithTheSid(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	tok := s.User(t, "alice")
	forged := sidOf(t, s, tok.AccessToken) + "." + strings.Repeat("A", 43)
	code, body := s.Post(t, "/api/refresh", map[string]string{"refresh_token": forged})
	assertError(t, code, body, http.StatusUnauthorized, "unauthorized")
	if code, body := s.Post(t, "/api/refresh", map[string]string{"refresh_token": tok.RefreshToken}); code != http.StatusOK {
		t.Fatalf("the owner's refresh after a refresh with only the sid: %d %s, want 200", code, body)
	}
}

// sidOf is the sign-in (refresh-token family) an access token names.
func sidOf(t *testing.T, s *signalingtest.Server, access string) string {
	t.Helper()
	c, err := s.Keys().VerifyAccess(access)
	if err != nil || c.Login == "" {
		t.Fatalf("access token names no sign-in: %+v, %v", c, err)
	}
	return c.Login
}
