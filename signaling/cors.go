package signaling

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Cross-origin use of the API and the SDK. A page on another origin may
// sign in, mint tickets and import /sdk/khadga.js only when its origin is
// listed in Config.AllowedOrigins (--allow-origin), the list that also
// admits it to the WebSocket and to the served pages' CSP connect-src.
//
// The answer names the one origin that asked, never "*", and never allows
// credentials: the SDK sends its tokens in the Authorization header, with
// fetch's credentials "omit", so no cookie is ever involved. Requests from
// other origins get 403 on /api/ and /sdk/ (the browser would hide the
// answer anyway; the status says why in its network log). Requests without
// an Origin (programs, not browsers) and from the server's own origin pass
// untouched.
const (
	corsAPIMethods = "GET, POST, PUT, DELETE"
	corsSDKMethods = "GET"
	corsHeaders    = "Authorization, Content-Type"
	// corsMaxAge lets a browser reuse a preflight answer for ten minutes.
	corsMaxAge = "600"
)

// corsAllowedHeaders are the request headers a page may send, lower case.
var corsAllowedHeaders = map[string]bool{"authorization": true, "content-type": true}

// cors answers preflight requests and labels the answers of /api/ and
// /sdk/ for the allowed origins.
func (s *Server) cors(next http.Handler) http.Handler {
	allowed := make(map[string]bool, len(s.cfg.AllowedOrigins))
	for _, o := range s.cfg.AllowedOrigins {
		allowed[normalOrigin(o)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		api, sdk := strings.HasPrefix(r.URL.Path, "/api/"), strings.HasPrefix(r.URL.Path, "/sdk/")
		if origin == "" || !(api || sdk) || sameHost(origin, r.Host) {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		if !allowed[normalOrigin(origin)] {
			writeError(w, http.StatusForbidden, "bad_origin", "origin not allowed: the server lists the web origins it serves with --allow-origin")
			return
		}
		methods := corsAPIMethods
		if sdk {
			methods = corsSDKMethods
		}
		if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", "Retry-After")
			next.ServeHTTP(w, r)
			return
		}
		// A preflight: say what the real request may be, or refuse it.
		if m := r.Header.Get("Access-Control-Request-Method"); !slices.Contains(strings.Split(methods, ", "), m) {
			writeError(w, http.StatusForbidden, "bad_origin", "method "+truncate(m, 32)+" is not allowed from other origins")
			return
		}
		for _, f := range strings.Split(r.Header.Get("Access-Control-Request-Headers"), ",") {
			if f = strings.ToLower(strings.TrimSpace(f)); f != "" && !corsAllowedHeaders[f] {
				writeError(w, http.StatusForbidden, "bad_origin", "header "+truncate(f, 64)+" is not allowed from other origins")
				return
			}
		}
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Methods", methods)
		h.Set("Access-Control-Allow-Headers", corsHeaders)
		h.Set("Access-Control-Max-Age", corsMaxAge)
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	})
}

// sameHost reports whether origin is the request's own (the host it was
// sent to), as the WebSocket's origin check decides it.
func sameHost(origin, host string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, host)
}

// normalOrigin is scheme://host[:port] in lower case, without a default
// port or a trailing slash, as browsers send Origin.
func normalOrigin(o string) string {
	u, err := url.Parse(strings.TrimSuffix(o, "/"))
	if err != nil || u.Host == "" {
		return ""
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	if (scheme == "http" && strings.HasSuffix(host, ":80")) || (scheme == "https" && strings.HasSuffix(host, ":443")) {
		host = host[:strings.LastIndexByte(host, ':')]
	}
	return scheme + "://" + host
}

// truncate cuts s to n bytes for an error message.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
