package signaling

import (
	"crypto/subtle"
	"net"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the HTTP API's counters; the hub and the TURN server register
// their own on the same registry.
type metrics struct {
	logins    *prometheus.CounterVec // by result: ok, failed, limited
	refreshes *prometheus.CounterVec // by result: ok, failed, reuse, limited
	registers prometheus.Counter
	wsRefused *prometheus.CounterVec // by reason
	// connsRefused counts connections closed at once: their address had
	// too many that were not WebSockets (Config.MaxConnsPerAddr).
	connsRefused prometheus.Counter
	limitNews    *prometheus.CounterVec // by what became of it: told, untold, heard, bad
	apiErrors    *prometheus.CounterVec // by kind: unavailable, conflict, internal
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "khadga_logins_total", Help: "Login attempts, by result (ok, failed, limited).",
		}, []string{"result"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "khadga_token_refreshes_total", Help: "Refresh-token uses, by result (ok, failed, reuse: an old token replayed and its family revoked, limited: answered 429).",
		}, []string{"result"}),
		registers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "khadga_registrations_total", Help: "Accounts created.",
		}),
		wsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "khadga_ws_refused_total", Help: "WebSocket upgrades refused, by reason (version, origin, auth, unavailable, conns).",
		}, []string{"reason"}),
		connsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "khadga_http_conns_refused_total", Help: "Connections closed as they came: their address had --max-conns-per-addr that were not WebSockets.",
		}),
		limitNews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "khadga_cluster_limit_news_total", Help: "Counts of the login and rate limiters shared with the other nodes of a cluster: told (sent), untold (NATS's outbox was full), heard (counted here), bad (unreadable, dropped).",
		}, []string{"what"}),
		apiErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "khadga_api_errors_total", Help: "Requests the server failed, by kind: unavailable (503: the store could not be reached), conflict (503: too many writers of one account at once), internal (500: the server failed, mostly the store: a disk or file problem).",
		}, []string{"kind"}),
	}
	if reg != nil {
		reg.MustRegister(m.logins, m.refreshes, m.registers, m.wsRefused, m.connsRefused, m.limitNews, m.apiErrors)
	}
	return m
}

// metricsHandler serves the registry. With a metrics token configured it
// serves only requests presenting it as a bearer token, loopback and the
// separate metrics listener included. Without one it serves loopback
// clients (after X-Forwarded-For from trusted proxies), and anyone on the
// separate metrics listener.
func (s *Server) metricsHandler() http.Handler {
	h := promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.metricsAllowed(r) {
			msg := "metrics are served to loopback clients only"
			if s.cfg.MetricsToken != "" {
				msg = "metrics are served with the metrics token (Authorization: Bearer), to loopback clients too"
			}
			writeError(w, http.StatusForbidden, codeUnauthorized, msg)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) metricsAllowed(r *http.Request) bool {
	if tok := s.cfg.MetricsToken; tok != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		return ok && subtle.ConstantTimeCompare([]byte(got), []byte(tok)) == 1
	}
	if s.cfg.MetricsListener != nil {
		return true // its own address: exposure is the operator's choice
	}
	addr, known := s.clientAddrKnown(r)
	ip := net.ParseIP(addr)
	return known && ip != nil && ip.IsLoopback()
}
