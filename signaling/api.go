package signaling

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/store"
)

// maxBody bounds every JSON request body. The largest legitimate one (a
// 1024-byte password, JSON-escaped) fits easily; a little more room lets an
// absurd username get its specific "too long" answer instead of 413.
const maxBody = 16 << 10

// apiError is the body of every error answer: {"error":{"code","message"}}.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// HTTP error codes, stable for clients to switch on.
const (
	codeBadRequest   = "bad_request"
	codeTooLarge     = "too_large"
	codeUnauthorized = "unauthorized"
	codeExists       = "exists"
	codeRateLimited  = "rate_limited"
	codeInternal     = "internal"
	codeNotFound     = "not_found"
	codeBusy         = "busy"
	// codeUnavailable: the store cannot be reached (in a cluster: NATS or
	// its JetStream quorum is down); nothing was decided, try again.
	codeUnavailable = "unavailable"
)

// errBadCredentials is the one answer to a wrong password and an unknown
// user alike, so that login does not reveal which usernames exist.
const errBadCredentials = "invalid username or password"

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if v != nil {
		json.NewEncoder(w).Encode(v)
	}
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]apiError{"error": {Code: code, Message: msg}})
}

// decodeBody reads a JSON object of at most maxBody bytes into v, refusing
// unknown fields and trailing data. On failure it has answered the request.
// The body must be declared application/json: a browser sends that type
// from another site only after a CORS preflight, which this server never
// grants, whereas an empty or form type is a "simple" request that any page
// can make its visitors' browsers send.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, codeBadRequest, "content type must be application/json")
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("request body is over %d bytes", maxBody))
		} else {
			writeError(w, http.StatusBadRequest, codeBadRequest, "could not read the request body")
		}
		return false
	}
	if !utf8.Valid(body) {
		writeError(w, http.StatusBadRequest, codeBadRequest, "request body is not valid UTF-8")
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, "invalid JSON body: "+proto.DescribeJSONError(err))
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, codeBadRequest, "invalid JSON body: data after the object")
		return false
	}
	return true
}

type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type registerRequest struct {
	credentials
	Email string `json:"email,omitempty"`
}

type loginRequest struct {
	credentials
	Code string `json:"code,omitempty"` // TOTP or recovery code, when the account has 2FA
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	var c registerRequest
	if !decodeBody(w, r, &c) {
		return
	}
	if err := proto.ValidUsername(c.Username); err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
		return
	}
	if err := proto.ValidPassword(c.Password); err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
		return
	}
	if c.Email == "" && s.mailer != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, "email is required on this server")
		return
	}
	if c.Email != "" {
		if err := validEmail(c.Email); err != nil {
			writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
			return
		}
	}
	if ok, retry := s.registers.Allow(auth.AddrKey(s.clientAddr(r)), s.cfg.Now()); !ok {
		tooMany(w, retry, "too many registrations from your address; try again later")
		return
	}
	// A taken name is answered before hashing: the answer says so anyway,
	// and the hash is the expensive part.
	if u, err := s.store.GetUser(c.Username); err == nil && s.lapsed(u) != nil {
		writeError(w, http.StatusConflict, codeExists, "username is taken")
		return
	}
	hash, ok := s.hashPassword(w, r, c.Password)
	if !ok || !s.releaseLapsed(w, r, c.Username) {
		return
	}
	u := store.User{Name: c.Username, PasswordHash: hash, Role: proto.RoleUser, Created: time.Now().UTC(), Email: c.Email}
	switch err := s.store.CreateUser(u); {
	case errors.Is(err, store.ErrUserExists):
		writeError(w, http.StatusConflict, codeExists, "username is taken")
		return
	case err != nil:
		s.internalError(w, "creating a user", err)
		return
	}
	if s.mailer != nil {
		if err := s.startEmailCheck(c.Username, c.Email); err != nil {
			s.log.Error("sending the verification email", slog.String("user", c.Username), slog.Any("err", err))
			s.store.DeleteUser(c.Username) // let the user try again with the same name
			writeError(w, http.StatusServiceUnavailable, "email_failed", "could not send the verification email; try again later")
			return
		}
	}
	s.metrics.registers.Inc()
	s.audit("register", c.Username, r, "")
	answer := map[string]any{"username": c.Username}
	if s.mailer != nil {
		answer["email_verification"] = "sent"
	}
	writeJSON(w, http.StatusCreated, answer)
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	var c loginRequest
	if !decodeBody(w, r, &c) {
		return
	}
	addr, key := s.clientAddr(r), limiterUser(c.credentials)
	if ok, limited := s.limitCheck(w, r, addr, key); !ok {
		if limited {
			s.metrics.logins.WithLabelValues("limited").Inc()
			s.loginRefused(key, addr, "too many failed attempts (429)")
		}
		return
	}
	u, ok, err := s.checkPassword(r, c.credentials)
	if err != nil {
		s.limiter.Cancel(addr, key, s.cfg.Now())
		if !s.hashBusy(w, err) {
			s.internalError(w, "reading an account to check its password", err)
		}
		return
	}
	if !ok {
		s.metrics.logins.WithLabelValues("failed").Inc()
		s.limiter.Failure(addr, key, s.cfg.Now())
		s.audit("login-failed", key, r, "")
		s.loginRefused(key, addr, "wrong password, unknown or disabled account")
		writeError(w, http.StatusUnauthorized, codeUnauthorized, errBadCredentials)
		return
	}
	if u.TOTP != nil && u.TOTP.Enabled && !s.secondFactor(w, r, addr, key, u.Name, c.Code) {
		return
	}
	if s.mailer != nil && u.Email != "" && !u.EmailVerified {
		s.limiter.Success(addr, key, s.cfg.Now())
		writeError(w, http.StatusForbidden, "email_unverified", "confirm your email address first: open the link we sent you")
		return
	}
	s.limiter.Success(addr, key, s.cfg.Now())
	pair, err := s.sessions.Login(u)
	switch {
	case errors.Is(err, auth.ErrCredentialsChanged), errors.Is(err, auth.ErrUserDisabled):
		// The password changed, or the account was disabled, while this
		// login checked the old state; its sign-in is revoked.
		s.metrics.logins.WithLabelValues("failed").Inc()
		writeError(w, http.StatusUnauthorized, codeUnauthorized, errBadCredentials)
		return
	case s.storeDown(w, err):
		return
	case err != nil:
		s.internalError(w, "issuing tokens", err)
		return
	}
	s.metrics.logins.WithLabelValues("ok").Inc()
	s.audit("login", u.Name, r, "")
	writeJSON(w, http.StatusOK, tokenPair(pair))
}

// limiterUser is the account key of c for the login limiter: its
// username once it is a valid one, else none, so that junk names (up to
// 16 KiB) never become keys (issue 14, point 7).
func limiterUser(c credentials) string {
	if proto.ValidUsername(c.Username) != nil {
		return ""
	}
	return c.Username
}

// limitCheck puts a password or second-factor check for user (a valid
// name or "") from addr under the login limits: it answers 429 when they
// refuse, and waits their delay. Every endpoint that checks a password or
// a code goes through it, so that none is an oracle the limits do not see
// (issue 14, point 2). When it returns ok, the caller must report the
// outcome with limiter.Failure, Success or Cancel. limited says it refused.
func (s *Server) limitCheck(w http.ResponseWriter, r *http.Request, addr, user string) (ok, limited bool) {
	delay, retry := s.limiter.Check(addr, user, s.cfg.Now())
	if retry > 0 {
		tooMany(w, retry, "too many failed attempts; try again later")
		return false, true
	}
	if delay > 0 && !sleepCtx(r, delay) {
		s.limiter.Cancel(addr, user, s.cfg.Now())
		return false, false
	}
	return true, false
}

// tooMany answers 429 with a Retry-After of retry, rounded up to seconds.
func tooMany(w http.ResponseWriter, retry time.Duration, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int((retry+time.Second-1)/time.Second))))
	writeError(w, http.StatusTooManyRequests, codeRateLimited, msg)
}

// hashBusy answers 503 when err says the password workers and their queue
// are full or the store is unavailable (or the client left while
// waiting), and reports whether it did.
func (s *Server) hashBusy(w http.ResponseWriter, err error) bool {
	if s.storeDown(w, err) {
		return true
	}
	switch {
	case errors.Is(err, auth.ErrBusy):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, codeBusy, "the server is busy checking passwords; try again in a moment")
		return true
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return true // the client is gone; nobody reads an answer
	}
	return false
}

// hashPassword hashes a new password under the hash gate; when it returns
// false it has answered (503 busy, or 500).
func (s *Server) hashPassword(w http.ResponseWriter, r *http.Request, password string) (string, bool) {
	var hash string
	var herr error
	if err := s.hashGate.Do(r.Context(), func() { hash, herr = s.cfg.Password.Hash(password) }); s.hashBusy(w, err) {
		return "", false
	}
	if herr != nil {
		s.internalError(w, "hashing a password", herr)
		return "", false
	}
	return hash, true
}

// checkPassword verifies c under the hash gate, spending the same time
// whether or not the user exists. Disabled accounts fail like a wrong
// password. An error means the password was not checked (the server is
// busy, the store unavailable, or the client left).
func (s *Server) checkPassword(r *http.Request, c credentials) (u store.User, ok bool, err error) {
	var verr error
	err = s.hashGate.Do(r.Context(), func() { u, ok, verr = s.verifyPassword(c) })
	return u, ok, cmp.Or(err, verr)
}

// verifyPassword checks c; its error is the store's failing (unavailable,
// or any failure but not finding the user), which must not count as a
// wrong password: a failing disk would otherwise tell every user their
// password is wrong, and block them after a few tries.
func (s *Server) verifyPassword(c credentials) (store.User, bool, error) {
	if proto.ValidUsername(c.Username) != nil || len(c.Password) > proto.MaxPassword {
		s.cfg.Password.DummyVerify(c.Password)
		return store.User{}, false, nil
	}
	u, err := s.store.GetUser(c.Username)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.User{}, false, err
	}
	if err != nil || u.Bot { // a bot's name has no password
		s.cfg.Password.DummyVerify(c.Password)
		return store.User{}, false, nil
	}
	ok, err := auth.VerifyPassword(u.PasswordHash, c.Password)
	if err != nil {
		s.log.Error("verifying a stored password hash", slog.String("user", u.Name), slog.Any("err", err))
		return store.User{}, false, nil
	}
	return u, ok && !u.Disabled, nil
}

// secondFactor checks and spends the login's TOTP or recovery code,
// answering the request when it is missing or wrong. When it returns
// false it has also settled the attempt with the login limits: a wrong
// code is a failure, so that the limits bound code guessing by someone
// who knows the password. A missing code is no guess, and counts neither
// way (as at /api/account/delete): the web app asks without a code first,
// and counting that as a failure of the client's address blocked an
// address after ten two-factor sign-ins, with the right password and code
// refused 429 (TestTwoFactorSignInsDoNotBlockTheAddress).
func (s *Server) secondFactor(w http.ResponseWriter, r *http.Request, addr, key, user, code string) bool {
	if code == "" {
		s.limiter.Cancel(addr, key, s.cfg.Now())
		writeError(w, http.StatusUnauthorized, codeTOTPRequired, "enter the code from your authenticator app")
		return false
	}
	err := s.store.UpdateUser(user, func(u *store.User) error {
		if u.TOTP == nil || !u.TOTP.Enabled || !s.spendSecondFactor(u, code) {
			return errTOTPRefused
		}
		return nil
	})
	if err != nil {
		s.settleCode(addr, key, err)
		s.audit("login-totp-failed", user, r, "")
		s.loginRefused(user, addr, "wrong second factor")
		s.userUpdated(w, err, "")
		return false
	}
	return true
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int    `json:"expires_in"`
	TokenType    string `json:"token_type"`
}

func tokenPair(p auth.Pair) tokenResponse {
	return tokenResponse{AccessToken: p.AccessToken, RefreshToken: p.RefreshToken, ExpiresIn: p.ExpiresIn, TokenType: "Bearer"}
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

func (s *Server) handleRefresh(w http.ResponseWriter, r *http.Request) {
	var req refreshRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if auth.IsBotRefresh(req.RefreshToken) {
		s.refreshBot(w, r, req.RefreshToken)
		return
	}
	if sid, ok := auth.RefreshFamilyID(req.RefreshToken); ok {
		if ok, retry := s.refreshes.Allow(sid, s.cfg.Now()); !ok {
			s.metrics.refreshes.WithLabelValues("limited").Inc()
			tooMany(w, retry, "this sign-in refreshed too often; try again later")
			return
		}
	}
	pair, err := s.sessions.Refresh(req.RefreshToken)
	if s.storeDown(w, err) {
		return
	}
	if err != nil && !refusedToken(err) {
		// The store failed: a 401 would sign the client out.
		s.internalError(w, "refreshing a sign-in", err)
		return
	}
	if err != nil {
		result := "failed"
		if re := (*auth.ReuseError)(nil); errors.As(err, &re) {
			result = "reuse"
			s.audit("refresh-reuse", re.User, r, "refresh token family revoked")
			s.closer.CloseLogin(re.User, re.Family, proto.CodeRevoked, reasonReuse)
			s.log.Warn("refresh token reused; family revoked", slog.String("user", re.User), slog.String("addr", s.clientAddr(r)))
		}
		s.metrics.refreshes.WithLabelValues(result).Inc()
		writeError(w, http.StatusUnauthorized, codeUnauthorized, "invalid or expired refresh token")
		return
	}
	s.metrics.refreshes.WithLabelValues("ok").Inc()
	writeJSON(w, http.StatusOK, tokenPair(pair))
}

// refusedToken reports whether a refresh's err refuses the token (it is
// malformed, unknown, revoked, expired or replayed, or its account is
// disabled), as opposed to the store's failing to answer.
func refusedToken(err error) bool {
	var reuse *auth.ReuseError
	return errors.Is(err, auth.ErrTokenInvalid) || errors.Is(err, auth.ErrUserDisabled) || errors.As(err, &reuse)
}

// refreshBot trades a bot refresh token (`khadga token --refresh`) for an
// access token; the refresh token stays the same.
func (s *Server) refreshBot(w http.ResponseWriter, r *http.Request, tok string) {
	pair, err := s.bots.Refresh(tok)
	if s.storeDown(w, err) {
		return
	}
	if err != nil && !refusedToken(err) {
		s.internalError(w, "refreshing a bot token", err)
		return
	}
	if err != nil {
		s.metrics.refreshes.WithLabelValues("failed").Inc()
		s.refusals.bot.Log(slog.LevelInfo, "bot refresh refused", slog.String("addr", s.clientAddr(r)), slog.Any("err", err))
		writeError(w, http.StatusUnauthorized, codeUnauthorized, "invalid, revoked or expired bot token")
		return
	}
	s.metrics.refreshes.WithLabelValues("ok").Inc()
	writeJSON(w, http.StatusOK, tokenPair(pair))
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	var req refreshRequest
	if !decodeBody(w, r, &req) {
		return
	}
	f, err := s.sessions.Logout(req.RefreshToken)
	if s.storeDown(w, err) {
		return // the sign-in still works: the client may try again
	}
	if err != nil {
		writeError(w, http.StatusUnauthorized, codeUnauthorized, "invalid refresh token")
		return
	}
	if f.User != "" {
		s.closer.CloseLogin(f.User, f.ID, proto.CodeRevoked, reasonSignedOut)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleTicket(w http.ResponseWriter, r *http.Request) {
	claims, err := s.bearer(r)
	if s.storeDown(w, err) {
		return
	}
	if err != nil {
		writeError(w, http.StatusUnauthorized, codeUnauthorized, err.Error())
		return
	}
	t, err := s.issueTicket(claims, s.clientAddr(r))
	switch {
	case errors.Is(err, auth.ErrTicketQuota):
		tooMany(w, auth.DefaultTicketTTL, "too many unused tickets for your account or address; use or let expire the ones you have")
		return
	case err != nil:
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "this server holds as many unused tickets as it can; try again in a moment")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ticket": t, "expires_in": int(auth.DefaultTicketTTL / time.Second)})
}

// bearer verifies the request's "Authorization: Bearer" access token and
// the account behind it (account): the claims carry its current role and
// rooms.
func (s *Server) bearer(r *http.Request) (auth.Claims, error) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return auth.Claims{}, errors.New("missing bearer token")
	}
	c, err := s.keys.VerifyAccess(tok)
	if err != nil {
		if errors.Is(err, auth.ErrTokenExpired) {
			return auth.Claims{}, errors.New("access token expired")
		}
		return auth.Claims{}, errors.New("invalid access token")
	}
	if c, err = s.account(c); err != nil {
		return auth.Claims{}, err
	}
	s.keyUsers.seen(c.Key, c.User, c.Expires, s.cfg.Now())
	return c, nil
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if !s.serving.Load() {
		writeError(w, http.StatusServiceUnavailable, "not_ready", "not serving")
		return
	}
	if err := s.store.Ping(); err != nil {
		// The reason (NATS disconnected, no JetStream quorum) is for the
		// operator; it never holds a credential. Said once: it read
		// "store unavailable: store: unavailable: NATS not ready: ...".
		why := strings.TrimPrefix(err.Error(), store.ErrUnavailable.Error()+": ")
		writeError(w, http.StatusServiceUnavailable, "not_ready", "store unavailable: "+why)
		return
	}
	if c := s.cfg.Cluster; c != nil {
		if err := c.Ready(); err != nil {
			writeError(w, http.StatusServiceUnavailable, "not_ready", "cluster unavailable: "+err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// storeDown answers 503 when err says the store cannot be reached (a
// cluster without NATS), or that a change lost to other writers of the
// same record too many times in a row (store.ErrConflict: many nodes
// changing one account at once), so that clients retry instead of taking
// it for a refusal (such as a wrong password or a dead refresh token),
// and reports whether it did. Neither changed anything.
func (s *Server) storeDown(w http.ResponseWriter, err error) bool {
	switch {
	case errors.Is(err, store.ErrUnavailable):
		s.metrics.apiErrors.WithLabelValues("unavailable").Inc()
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, codeUnavailable,
			"the account store cannot be reached right now (NATS JetStream did not answer in time, or this node is not connected to it); nothing was changed, try again in a moment")
	case errors.Is(err, store.ErrConflict):
		s.metrics.apiErrors.WithLabelValues("conflict").Inc()
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, codeUnavailable,
			"too many changes to this account at once; nothing was changed, try again in a moment")
	default:
		return false
	}
	return true
}

func (s *Server) internalError(w http.ResponseWriter, what string, err error) {
	if s.storeDown(w, err) {
		s.log.Warn(what, slog.Any("err", err))
		return
	}
	s.metrics.apiErrors.WithLabelValues("internal").Inc()
	s.log.Error(what, slog.Any("err", err))
	writeError(w, http.StatusInternalServerError, codeInternal, "internal error")
}

func (s *Server) audit(kind, user string, r *http.Request, detail string) {
	s.auditFrom(kind, user, s.clientAddr(r), detail)
}

// auditFrom writes an audit event of a request from addr that has been
// answered already.
func (s *Server) auditFrom(kind, user, addr, detail string) {
	ev := store.AuditEvent{Time: time.Now().UTC(), Kind: kind, User: user, Addr: addr, Detail: detail}
	if err := s.store.Audit(ev); err != nil {
		s.log.Warn("writing the audit log", slog.Any("err", err))
	}
}

// sleepCtx waits d unless the request is cancelled first.
func sleepCtx(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}
