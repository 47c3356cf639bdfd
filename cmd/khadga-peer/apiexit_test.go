package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// statusServer answers every request under /NNN/ with status NNN and a
// khadga error body carrying code; a 429 also says Retry-After: 30.
func statusServer(t *testing.T, codes map[int]string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		status, err := strconv.Atoi(first)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "30")
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"code":%q,"message":"answered %d by the test"}}`, codes[status], status)
	}))
	t.Cleanup(s.Close)
	return s
}

// TestAPIExitCodes: what the server answers a login, or a stored
// session's connection, decides the exit code. Refused credentials are 3;
// a server that is rate limiting, failing or not there is 4, worth trying
// again later (a 429 used to exit 2, as if the command line were wrong);
// a request the server calls malformed is 2.
func TestAPIExitCodes(t *testing.T) {
	codes := map[int]string{
		400: "bad_request", 401: "unauthorized", 403: "email_unverified", 404: "not_found",
		429: "rate_limited", 500: "internal", 503: "unavailable",
	}
	s := statusServer(t, codes)
	// A port nothing listens on: a listener closed at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cases := []struct {
		server string
		want   int
		says   string
	}{
		{s.URL + "/400", exitUsage, "400 bad_request"},
		{s.URL + "/404", exitUsage, "404 not_found"},
		{s.URL + "/401", exitAuth, "401 unauthorized"},
		{s.URL + "/403", exitAuth, "403 email_unverified"},
		{s.URL + "/429", exitConnect, "retry after 30s"},
		{s.URL + "/500", exitConnect, "500 internal"},
		{s.URL + "/503", exitConnect, "503 unavailable"},
		{closed, exitConnect, ""},
	}
	for _, tc := range cases {
		name := strings.TrimPrefix(strings.TrimPrefix(tc.server, s.URL), "/")
		if tc.server == closed {
			name = "unreachable"
		}
		t.Run("login "+name, func(t *testing.T) {
			out, err := peerCmd(ctx, t, t.TempDir(), password+"\n", "login", "--server", tc.server, "--user", "alice").CombinedOutput()
			if code := exitCode(t, err); code != tc.want || !strings.Contains(string(out), tc.says) {
				t.Fatalf("exit %d, want %d saying %q:\n%s", code, tc.want, tc.says, out)
			}
		})
	}
	// Connecting with stored tokens goes through the same rule.
	for _, tc := range []struct {
		status, want int
	}{{403, exitAuth}, {429, exitConnect}, {503, exitConnect}} {
		t.Run("recv "+strconv.Itoa(tc.status), func(t *testing.T) {
			dir := t.TempDir()
			url := s.URL + "/" + strconv.Itoa(tc.status)
			st := &store{Server: url, User: "alice", Access: "access", Refresh: "refresh", Expiry: time.Now().Add(time.Hour)}
			if err := saveStore(dir, st); err != nil {
				t.Fatal(err)
			}
			out, err := peerCmd(ctx, t, dir, "", "recv", "--room", "r", "--timeout", "5s").CombinedOutput()
			if code := exitCode(t, err); code != tc.want || !strings.Contains(string(out), strconv.Itoa(tc.status)) {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.want, out)
			}
		})
	}
}
