package signaling

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/hub"
	"github.com/khadga/khadga/signaling/store"
)

// upgrader does the HTTP half of the WebSocket handshake; the hub takes
// the raw connection after it (Hub.Accept). With no buffer sizes set,
// gorilla reuses net/http's buffers for the handshake instead of
// allocating its own. Origin is checked in handleWS before the upgrade,
// with a specific answer; gorilla's own check would only say 403.
var upgrader = websocket.Upgrader{
	HandshakeTimeout: 10 * time.Second,
	Subprotocols:     proto.Subprotocols,
	CheckOrigin:      func(*http.Request) bool { return true },
}

// handleWS authenticates the request and hands the connection to the hub.
// Everything that can be refused is refused before the upgrade, with an HTTP
// status and a body that says why.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		writeError(w, http.StatusBadRequest, codeBadRequest, "this endpoint speaks WebSocket only")
		return
	}
	if msg := handshakeError(r); msg != "" {
		// Checked before the ticket is redeemed: an upgrade that gorilla
		// would refuse after that would spend the client's ticket.
		writeError(w, http.StatusBadRequest, codeBadRequest, msg)
		return
	}
	if !offersSubprotocol(r) {
		s.metrics.wsRefused.WithLabelValues("version").Inc()
		writeError(w, http.StatusBadRequest, "unsupported_version",
			"offer a supported protocol version in Sec-WebSocket-Protocol: "+strings.Join(proto.Subprotocols, ", "))
		return
	}
	if !s.originAllowed(r) {
		s.metrics.wsRefused.WithLabelValues("origin").Inc()
		s.refusals.origin.Log(slog.LevelInfo, "websocket refused: origin not allowed",
			slog.String("origin", clip(r.Header.Get("Origin"))), slog.String("addr", s.clientAddr(r)))
		writeError(w, http.StatusForbidden, "bad_origin", "origin not allowed")
		return
	}
	checked := time.Now() // before the store is read (hub.Identity.Checked)
	claims, err := s.wsClaims(r)
	if s.storeDown(w, err) {
		s.metrics.wsRefused.WithLabelValues("unavailable").Inc()
		return
	}
	if err != nil {
		s.metrics.wsRefused.WithLabelValues("auth").Inc()
		s.refusals.auth.Log(slog.LevelInfo, "websocket refused: no valid credentials",
			slog.String("addr", s.clientAddr(r)), slog.String("err", err.Error()))
		writeError(w, http.StatusUnauthorized, codeUnauthorized, err.Error())
		return
	}
	resume := wsCredential(r, resumeProtocol, "resume")
	if n, limit := s.hub.UserConns(claims.User); n >= limit && !s.hub.TakesOver(claims.User, resume) {
		s.metrics.wsRefused.WithLabelValues("conns").Inc()
		s.refusals.conns.Log(slog.LevelInfo, "websocket refused: the user has too many connections open",
			slog.String("user", claims.User), slog.Int("max_conns_per_user", limit))
		writeError(w, http.StatusTooManyRequests, "too_many_connections",
			fmt.Sprintf("user %s already has %d connections open", claims.User, limit))
		return
	}
	opts := hub.ConnOptions{ResumeToken: resume, Presence: r.URL.Query().Get("presence") != "0"}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // gorilla has answered the request
	}
	// Accept lets this handler return: the hub reads on its own goroutines,
	// and net/http frees the request's buffers, which keeps idle
	// connections small. The same hub code serves ws:// and wss://.
	id := hub.Identity{User: claims.User, Role: claims.Role, Rooms: claims.Rooms, Login: claims.Login, KeyID: claims.Key,
		Checked: checked}
	if err := s.hub.Accept(ws.NetConn(), id, opts); err != nil && !errors.Is(err, hub.ErrClosed) {
		s.refusals.conns.Log(slog.LevelInfo, "websocket refused", slog.String("user", id.User), slog.Any("err", err))
	}
}

// handshakeError is what an opening handshake lacks that gorilla's
// Upgrade requires (RFC 6455 section 4.2.1), "" if nothing.
func handshakeError(r *http.Request) string {
	switch {
	case r.Method != http.MethodGet:
		return "a WebSocket opens with GET"
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return "unsupported WebSocket version: want Sec-WebSocket-Version 13"
	case len(r.Header.Get("Sec-WebSocket-Key")) != 24:
		return "missing or malformed Sec-WebSocket-Key"
	}
	return ""
}

// wsClaims authenticates a WebSocket request by its bearer header or by a
// one-time ticket (browsers cannot set headers).
func (s *Server) wsClaims(r *http.Request) (auth.Claims, error) {
	if t := wsCredential(r, ticketProtocol, "ticket"); t != "" {
		c, err := s.redeemTicket(t)
		if errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrConflict) {
			return auth.Claims{}, err // 503: the ticket is unspent, try again
		}
		if err != nil {
			return auth.Claims{}, errors.New("invalid, used or expired ticket")
		}
		return c, nil
	}
	return s.bearer(r)
}

// A cluster node's tickets start with its id and a dot (base64url has no
// dots), so that any node can have the issuer redeem them.
const ticketNodeSep = "."

// issueTicket issues a ticket for claims, named for this node in a
// cluster.
func (s *Server) issueTicket(c auth.Claims, addr string) (string, error) {
	t, err := s.tickets.Issue(c, addr)
	if err != nil || s.cfg.Cluster == nil {
		return t, err
	}
	return s.cfg.Cluster.ID() + ticketNodeSep + t, nil
}

// redeemTicket spends t here, or, if another node of the cluster issued
// it, there. A ticket of this node's that could not be checked because
// the store is unavailable is left unspent, with that error.
func (s *Server) redeemTicket(t string) (auth.Claims, error) {
	node, id, named := strings.Cut(t, ticketNodeSep)
	switch {
	case s.cfg.Cluster == nil || !named:
		return s.tickets.RedeemChecked(t, s.cfg.Now())
	case node == s.cfg.Cluster.ID():
		return s.tickets.RedeemChecked(id, s.cfg.Now())
	}
	b, ok := s.cfg.Cluster.RedeemTicket(node, id)
	var c auth.Claims
	if !ok || json.Unmarshal(b, &c) != nil || c.User == "" {
		return auth.Claims{}, auth.ErrTokenInvalid
	}
	return c, nil
}

// redeemForNode spends, for another node, a ticket this one issued, and
// returns its claims encoded (Cluster.ServeTickets).
func (s *Server) redeemForNode(id string) ([]byte, bool) {
	c, ok := s.tickets.Redeem(id, s.cfg.Now())
	if !ok {
		return nil, false
	}
	b, err := json.Marshal(c)
	return b, err == nil
}

// A client puts its ticket and resume token in Sec-WebSocket-Protocol, as
// entries after the protocol version (khadga.ticket.TICKET,
// khadga.resume.TOKEN), not in the URL, which proxies write to their
// access logs; a browser can set no other header on a WebSocket. The
// server never chooses these entries, so the answer does not repeat them.
// Clients from before took them in the query, which still works.
const (
	ticketProtocol = "khadga.ticket."
	resumeProtocol = "khadga.resume."
)

// wsCredential is the credential that the protocol entry with prefix
// carries, or else the query parameter name. The header may come as
// several lines (RFC 6455 section 11.3.4), each a list.
func wsCredential(r *http.Request, prefix, name string) string {
	for _, line := range r.Header.Values("Sec-Websocket-Protocol") {
		for p := range strings.SplitSeq(line, ",") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), prefix); ok {
				return v
			}
		}
	}
	return r.URL.Query().Get(name)
}

func offersSubprotocol(r *http.Request) bool {
	for _, p := range websocket.Subprotocols(r) {
		if slices.Contains(proto.Subprotocols, p) {
			return true
		}
	}
	return false
}

// originAllowed accepts requests without an Origin (non-browser clients,
// which must still authenticate), the server's own origin, and the
// configured allow-list.
func (s *Server) originAllowed(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, a := range s.cfg.AllowedOrigins {
		if strings.EqualFold(strings.TrimSuffix(a, "/"), o) {
			return true
		}
	}
	return false
}
