package signaling

import "net/http"

// Handler is the server's HTTP handler: the API, the WebSocket endpoint,
// probes and the web app, all behind the security headers.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/register", s.handleRegister)
	mux.HandleFunc("POST /api/login", s.handleLogin)
	mux.HandleFunc("POST /api/refresh", s.handleRefresh)
	mux.HandleFunc("POST /api/logout", s.handleLogout)
	mux.HandleFunc("POST /api/ws-ticket", s.handleTicket)
	mux.HandleFunc("POST /api/totp/enroll", s.handleTOTPEnroll)
	mux.HandleFunc("POST /api/totp/confirm", s.handleTOTPConfirm)
	mux.HandleFunc("POST /api/totp/disable", s.handleTOTPDisable)
	mux.HandleFunc("GET /api/verify-email", s.handleVerifyEmail)
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
	return securityHeaders(mux)
}

// securityHeaders sets the headers every answer carries: a strict CSP with
// no inline script, no sniffing, no referrer, no framing.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		}
		next.ServeHTTP(w, r)
	})
}
