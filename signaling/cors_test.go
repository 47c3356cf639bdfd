package signaling_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestCORS: pages on the listed origins may call the API and fetch the SDK
// from their own origin, after a preflight that names the methods and
// headers; every other origin is refused, no answer says "*" or allows
// credentials, and programs (no Origin) and the server's own pages are
// untouched.
func TestCORS(t *testing.T) {
	const app = "https://app.example.org"
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{
		AllowedOrigins: []string{app, "https://other.example.org:443/"},
	}})
	type want struct {
		status  int
		allowed string // Access-Control-Allow-Origin
		methods string
	}
	cases := []struct {
		name, method, path, origin string
		headers                    map[string]string
		body                       string
		want                       want
	}{
		{"preflight of a login", "OPTIONS", "/api/login", app,
			map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}, "",
			want{204, app, "GET, POST, PUT, DELETE"}},
		{"preflight of a ticket", "OPTIONS", "/api/ws-ticket", app,
			map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}, "",
			want{204, app, "GET, POST, PUT, DELETE"}},
		{"preflight of the SDK", "OPTIONS", "/sdk/khadga.js", app,
			map[string]string{"Access-Control-Request-Method": "GET"}, "", want{204, app, "GET"}},
		{"default port in the list", "OPTIONS", "/api/login", "https://other.example.org",
			map[string]string{"Access-Control-Request-Method": "POST"}, "", want{204, "https://other.example.org", "GET, POST, PUT, DELETE"}},
		{"preflight from an unlisted origin", "OPTIONS", "/api/login", "https://evil.example",
			map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}, "", want{403, "", ""}},
		{"preflight of another method", "OPTIONS", "/api/login", app,
			map[string]string{"Access-Control-Request-Method": "PATCH"}, "", want{403, "", ""}},
		{"preflight of another header", "OPTIONS", "/api/login", app,
			map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type, x-sneaky"}, "", want{403, "", ""}},
		{"preflight of a POST to the SDK", "OPTIONS", "/sdk/khadga.js", app,
			map[string]string{"Access-Control-Request-Method": "POST"}, "", want{403, "", ""}},
		{"login from the listed origin", "POST", "/api/login", app,
			map[string]string{"Content-Type": "application/json"}, `{"username":"nobody","password":"wrong password"}`, want{401, app, ""}},
		{"register from an unlisted origin", "POST", "/api/register", "https://evil.example",
			map[string]string{"Content-Type": "application/json"}, `{"username":"mallory","password":"a long enough one"}`, want{403, "", ""}},
		{"the SDK for the listed origin", "GET", "/sdk/khadga.js", app, nil, "", want{200, app, ""}},
		{"the SDK for an unlisted origin", "GET", "/sdk/khadga.js", "https://evil.example", nil, "", want{403, "", ""}},
		{"the SDK for a program", "GET", "/sdk/khadga.js", "", nil, "", want{200, "", ""}},
		{"the app's own origin", "POST", "/api/login", s.URL,
			map[string]string{"Content-Type": "application/json"}, `{"username":"nobody","password":"wrong password"}`, want{401, "", ""}},
		{"an opaque origin", "POST", "/api/login", "null",
			map[string]string{"Content-Type": "application/json"}, `{}`, want{403, "", ""}},
		{"not the API", "GET", "/healthz", "https://evil.example", nil, "", want{200, "", ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, s.URL+c.path, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			if c.origin != "" {
				req.Header.Set("Origin", c.origin)
			}
			for k, v := range c.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			h := resp.Header
			if resp.StatusCode != c.want.status || h.Get("Access-Control-Allow-Origin") != c.want.allowed {
				t.Fatalf("%d, Allow-Origin %q; want %d, %q\n%s", resp.StatusCode, h.Get("Access-Control-Allow-Origin"), c.want.status, c.want.allowed, body)
			}
			if h.Get("Access-Control-Allow-Methods") != c.want.methods {
				t.Errorf("Allow-Methods %q, want %q", h.Get("Access-Control-Allow-Methods"), c.want.methods)
			}
			if h.Get("Access-Control-Allow-Credentials") != "" {
				t.Errorf("credentials allowed: %q", h.Get("Access-Control-Allow-Credentials"))
			}
			if c.want.status == 204 && (h.Get("Access-Control-Allow-Headers") != "Authorization, Content-Type" || h.Get("Access-Control-Max-Age") != "600") {
				t.Errorf("preflight headers %q, max age %q", h.Get("Access-Control-Allow-Headers"), h.Get("Access-Control-Max-Age"))
			}
			if c.want.allowed != "" && !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
				t.Errorf("no Vary: Origin on an answer for one origin")
			}
			if c.want.status == 403 && !strings.Contains(string(body), "--allow-origin") && !strings.Contains(string(body), "not allowed") {
				t.Errorf("refusal does not say why: %s", body)
			}
		})
	}
	// The refused registration changed nothing.
	if code, body := s.Post(t, "/api/login", map[string]string{"username": "mallory", "password": "a long enough one"}); code != http.StatusUnauthorized {
		t.Fatalf("login of the refused registration: %d %s", code, body)
	}
}
