package signaling

import (
	"net/http"
	"net/url"
	"strings"
)

// Handler is the server's HTTP handler: the API, the WebSocket endpoint,
// probes and the web app, all behind the security headers.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/register", s.handleRegister)
	mux.HandleFunc("POST /api/login", s.handleLogin)
	mux.HandleFunc("POST /api/refresh", s.handleRefresh)
	mux.HandleFunc("POST /api/logout", s.handleLogout)
	mux.HandleFunc("POST /api/logout-others", s.handleLogoutOthers)
	mux.HandleFunc("POST /api/password", s.handlePassword)
	mux.HandleFunc("POST /api/account/delete", s.handleDeleteAccount)
	mux.HandleFunc("POST /api/resend-verification", s.handleResendVerification)
	mux.HandleFunc("POST /api/password-reset", s.handleResetRequest)
	mux.HandleFunc("POST /api/password-reset/confirm", s.handleResetConfirm)
	mux.HandleFunc("POST /api/ws-ticket", s.handleTicket)
	mux.HandleFunc("POST /api/totp/enroll", s.handleTOTPEnroll)
	mux.HandleFunc("POST /api/totp/confirm", s.handleTOTPConfirm)
	mux.HandleFunc("POST /api/totp/disable", s.handleTOTPDisable)
	mux.HandleFunc("GET /api/verify-email", s.handleVerifyEmail)
	mux.HandleFunc("GET /api/rooms", s.handleRoomsMine)
	mux.HandleFunc("GET /api/rooms/{name}", s.handleRoomGet)
	mux.HandleFunc("PUT /api/rooms/{name}", s.handleRoomPut)
	mux.HandleFunc("DELETE /api/rooms/{name}", s.handleRoomDelete)
	mux.HandleFunc("POST /api/rooms/{name}/invite", s.handleRoomInvite)
	mux.HandleFunc("GET /api/admin/status", s.handleStatus)
	mux.HandleFunc("GET /ws", s.handleWS)
	mux.HandleFunc("GET /healthz", s.handleHealth)
	mux.HandleFunc("GET /readyz", s.handleReady)
	if s.cfg.Gatherer != nil && s.cfg.MetricsListener == nil {
		mux.Handle("GET /metrics", s.metricsHandler())
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, codeNotFound, "no such API endpoint or method")
	})
	mux.Handle("/", webApp())
	return s.securityHeaders(s.cors(mux))
}

// securityHeaders sets the headers every answer carries: a strict CSP with
// no inline script, no sniffing, no referrer, no framing.
func (s *Server) securityHeaders(next http.Handler) http.Handler {
	connect := connectSources(s.cfg.PublicURL, s.cfg.AllowedOrigins)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src "+
			connect+requestOrigin(r)+"; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		}
		next.ServeHTTP(w, r)
	})
}

// connectSources lists where the served pages may connect (fetch and
// WebSocket): this server ('self'), its public URL and the configured
// origins, each also as the ws: or wss: twin of its origin. A page of this
// server that an attacker managed to inject script into cannot then send
// what it reads anywhere else, as "ws: wss:" (any host) allowed.
func connectSources(publicURL string, origins []string) string {
	srcs := []string{"'self'"}
	for _, o := range append([]string{publicURL}, origins...) {
		u, err := url.Parse(o)
		if o == "" || err != nil || u.Host == "" || !cspSafe(u.Host) {
			continue // Validate refused it, or it is unset
		}
		switch u.Scheme {
		case "https":
			srcs = append(srcs, "https://"+u.Host, "wss://"+u.Host)
		case "http":
			srcs = append(srcs, "http://"+u.Host, "ws://"+u.Host)
		}
	}
	return strings.Join(srcs, " ")
}

// requestOrigin is the WebSocket twin of the origin the request came to,
// which 'self' covers in CSP 3 browsers but not in older ones. A Host that
// is not a plain host[:port] adds nothing.
func requestOrigin(r *http.Request) string {
	if r.Host == "" || !cspSafe(r.Host) {
		return ""
	}
	if r.TLS != nil {
		return " wss://" + r.Host
	}
	return " ws://" + r.Host
}

// cspSafe reports whether host has only the characters of a host name, an
// IP address (IPv6 in brackets) and a port, so that it cannot end a CSP
// directive or add a source.
func cspSafe(host string) bool {
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-:[]", c)) {
			return false
		}
	}
	return len(host) <= 255
}
