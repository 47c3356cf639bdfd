package signaling

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/store"
)

// Resending the verification email: per account and per address, a burst
// of resendBurst, then one every resendEvery. A person whose link expired
// needs one; nobody needs a stream of them.
const (
	resendBurst = 3
	resendEvery = 600 // seconds
)

type passwordRequest struct {
	Password    string `json:"password"` // the current one
	NewPassword string `json:"new_password"`
}

// handlePassword changes the signed-in user's password. It takes the
// current password, so that a stolen access token is not enough, and puts
// that check under the login limits like every other. Every refresh-token
// family of the user is revoked, and the answer is a fresh token pair for
// this session. The sessions of the account's other sign-ins end (the
// hub closes them); this one's socket stays, and reconnects with the new
// tokens.
func (s *Server) handlePassword(w http.ResponseWriter, r *http.Request) {
	claims, ok := s.requireBearer(w, r)
	if !ok {
		return
	}
	var req passwordRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if err := proto.ValidPassword(req.NewPassword); err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, "new password: "+err.Error())
		return
	}
	u, ok := s.passwordOK(w, r, claims.User, credentials{Username: claims.User, Password: req.Password}, "the current password is wrong", "password-change-failed")
	if !ok {
		return
	}
	hash, ok := s.hashPassword(w, r, req.NewPassword)
	if !ok {
		return
	}
	err := s.store.UpdateUser(u.Name, func(u *store.User) error { u.PasswordHash = hash; return nil })
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusUnauthorized, codeUnauthorized, "account no longer exists")
		return
	case err != nil:
		s.internalError(w, "changing a password", err)
		return
	}
	u.PasswordHash = hash // as stored: Login checks it is still so
	s.onlyThisSignIn(w, r, u, claims.Login, reasonPassword, "password-changed", outlivedPassword)
}

// outlivedPassword answers a password change or reset whose new password
// is in place but whose revocation of the account's sign-ins failed.
const outlivedPassword = "the new password is in place, but the account's other sign-ins could not all be ended: sign in with the new password and change it once more to end them"

// signInsOutlived answers a request whose revocation of the account's
// sign-ins failed with msg: by then something may have changed (a new
// password is in place), so "nothing was changed" would be false, and
// the person needs to know that other sign-ins may live on.
func (s *Server) signInsOutlived(w http.ResponseWriter, user string, err error, msg string) {
	s.log.Error("ending the sign-ins of an account", slog.String("user", user), slog.Any("err", err))
	w.Header().Set("Retry-After", "5")
	writeError(w, http.StatusServiceUnavailable, codeUnavailable, msg)
}

// onlyThisSignIn ends every sign-in of u (as stored) but login, the
// caller's, which goes on with the fresh token pair it answers; its
// sockets move to the new sign-in, so that signing out ends them. The
// others' sessions are told reason. outlived is the answer when the
// revocation failed (signInsOutlived).
func (s *Server) onlyThisSignIn(w http.ResponseWriter, r *http.Request, u store.User, login, reason, auditKind, outlived string) {
	revoked, err := s.revokeSignIns(u.Name)
	if err != nil {
		s.signInsOutlived(w, u.Name, err, outlived)
		return
	}
	pair, err := s.sessions.Login(u)
	switch {
	case errors.Is(err, auth.ErrCredentialsChanged), errors.Is(err, auth.ErrUserDisabled):
		writeError(w, http.StatusConflict, codeConflict, "the password was changed again, or the account disabled, meanwhile; sign in again")
		return
	case err != nil:
		s.internalError(w, "issuing tokens", err)
		return
	}
	for _, f := range revoked {
		if f != login {
			s.closer.CloseLogin(u.Name, f, proto.CodeRevoked, reason)
		}
	}
	s.closer.MoveLogin(u.Name, login, pair.Family())
	s.audit(auditKind, u.Name, r, "")
	writeJSON(w, http.StatusOK, tokenPair(pair))
}

// reasonSignedOutElsewhere is what the sessions of the sign-ins that
// handleLogoutOthers ends are told.
const reasonSignedOutElsewhere = "signed out from another device of the account"

// handleLogoutOthers ends every other sign-in of the signed-in user (a
// lost phone, a shared computer), as a password change does but keeping
// the password. It takes the password under the login limits, so that a
// stolen access token cannot sign its owner out everywhere, and answers
// with fresh tokens for this session.
func (s *Server) handleLogoutOthers(w http.ResponseWriter, r *http.Request) {
	claims, ok := s.requireBearer(w, r)
	if !ok {
		return
	}
	var req struct {
		Password string `json:"password"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	u, ok := s.passwordOK(w, r, claims.User, credentials{Username: claims.User, Password: req.Password}, "the password is wrong", "logout-others-failed")
	if !ok {
		return
	}
	s.onlyThisSignIn(w, r, u, claims.Login, reasonSignedOutElsewhere, "logout-others",
		"the account's other sign-ins could not all be ended; try again")
}

// reasonPassword is what the other sessions of an account are told when
// its password changes.
const reasonPassword = "the account's password was changed; sign in again"

// revokeSignIns revokes every refresh-token family of user. It tries
// three times when the store does not answer: revoking is idempotent, and
// by now (a new password in place) an answer may no longer say "nothing
// was changed". It returns the families it revoked.
func (s *Server) revokeSignIns(user string) ([]string, error) {
	var err error
	for wait := 100 * time.Millisecond; ; wait *= 3 {
		var ids []string
		if ids, err = s.store.RevokeUserFamilyIDs(user); err == nil {
			return ids, nil
		}
		if wait > 300*time.Millisecond || !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, store.ErrConflict) {
			return nil, err
		}
		time.Sleep(wait)
	}
}

// passwordOK checks c's password under the login limits (key is the
// account's limiter key) and reports the outcome to them. When it returns
// false it has answered: 429 past the limits, 503 when the password
// workers are busy, 401 with refused for a wrong password (written to the
// audit log as auditKind, if set).
func (s *Server) passwordOK(w http.ResponseWriter, r *http.Request, key string, c credentials, refused, auditKind string) (store.User, bool) {
	addr := s.clientAddr(r)
	u, ok := s.passwordChecked(w, r, addr, key, c, refused, auditKind)
	if !ok {
		return store.User{}, false
	}
	if u.TOTP != nil && u.TOTP.Enabled {
		// A password alone does not sign in to this account, so it does
		// not clear the failures its wrong codes counted: else someone who
		// knows the password could guess codes at /api/login without
		// limit, clearing the count here between guesses.
		s.limiter.Cancel(addr, key, s.cfg.Now())
	} else {
		s.limiter.Success(addr, key, s.cfg.Now())
	}
	return u, true
}

// passwordChecked is passwordOK for a request that goes on to check a
// second factor: a right password leaves the attempt open, and the caller
// settles it once the code is checked (settleCode).
func (s *Server) passwordChecked(w http.ResponseWriter, r *http.Request, addr, key string, c credentials, refused, auditKind string) (store.User, bool) {
	if ok, _ := s.limitCheck(w, r, addr, key); !ok {
		return store.User{}, false
	}
	u, ok, err := s.checkPassword(r, c)
	switch {
	case err != nil:
		s.limiter.Cancel(addr, key, s.cfg.Now())
		s.hashBusy(w, err)
		return store.User{}, false
	case !ok:
		s.limiter.Failure(addr, key, s.cfg.Now())
		if auditKind != "" {
			s.audit(auditKind, key, r, "wrong password")
		}
		writeError(w, http.StatusUnauthorized, codeUnauthorized, refused)
		return store.User{}, false
	}
	return u, true
}

type resendRequest struct {
	credentials
	// Email corrects the address the link goes to, while it is unconfirmed.
	Email string `json:"email,omitempty"`
}

// handleResendVerification mails a fresh verification link (the old one
// stops working) to an account whose address is not confirmed yet, so that
// an expired link or a mistyped address does not leave its username stuck.
// It takes the username and password, under the login limits, and is
// rate-limited per account and per address.
func (s *Server) handleResendVerification(w http.ResponseWriter, r *http.Request) {
	if s.mailer == nil {
		writeError(w, http.StatusNotFound, codeNotFound, "this server does not check email addresses")
		return
	}
	var req resendRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Email != "" {
		if err := validEmail(req.Email); err != nil {
			writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
			return
		}
	}
	u, ok := s.passwordOK(w, r, limiterUser(req.credentials), req.credentials, errBadCredentials, "")
	if !ok {
		return
	}
	addr := s.clientAddr(r)
	if u.EmailVerified || (u.Email == "" && req.Email == "") {
		writeError(w, http.StatusConflict, codeConflict, "this account's email address is confirmed already: sign in")
		return
	}
	for _, k := range []string{"u:" + u.Name, auth.AddrKey(addr)} {
		if ok, retry := s.resends.Allow(k, s.cfg.Now()); !ok {
			tooMany(w, retry, "a verification email was sent a moment ago; check your inbox (and spam folder), or try again later")
			return
		}
	}
	email := u.Email
	if req.Email != "" {
		email = req.Email
	}
	err := s.startEmailCheck(u.Name, email)
	switch {
	case errors.Is(err, errConflict), errors.Is(err, store.ErrNotFound):
		s.userUpdated(w, err, "this account's email address is confirmed already: sign in")
		return
	case err != nil:
		s.log.Error("sending the verification email", slog.String("user", u.Name), slog.Any("err", err))
		writeError(w, http.StatusServiceUnavailable, "email_failed", "could not send the verification email; try again later")
		return
	}
	s.audit("email-resent", u.Name, r, "")
	writeJSON(w, http.StatusAccepted, map[string]string{"email_verification": "sent"})
}

// reasonDeleted is what the sessions of an account that its user deleted
// are told.
const reasonDeleted = "this account was deleted"

// handleDeleteAccount deletes the signed-in user's account for good: its
// sign-ins end, the rooms it owns are released (store.DeleteUser), and the
// name is free to be registered again. It takes the password under the
// login limits, and the second factor's code when the account has one, so
// that a stolen access token cannot delete an account. Sessions of a bot
// token of the same name (an admin's choice) go on.
func (s *Server) handleDeleteAccount(w http.ResponseWriter, r *http.Request) {
	claims, req, addr, ok := s.passwordThenCode(w, r, "account-delete-failed")
	if !ok || !s.deletionCode(w, addr, claims.User, req.Code) {
		return
	}
	// One step: a store that fails halfway must not sign the user out of
	// an account it then reports as still there.
	logins, err := s.store.DeleteUser(claims.User)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusUnauthorized, codeUnauthorized, "account no longer exists")
		return
	case err != nil:
		s.internalError(w, "deleting an account", err)
		return
	}
	for _, l := range logins {
		s.closer.CloseLogin(claims.User, l, proto.CodeRevoked, reasonDeleted)
	}
	s.audit("account-deleted", claims.User, r, "")
	s.holdForBots(claims.User)
	w.WriteHeader(http.StatusNoContent)
}

// holdForBots holds the name of an account just deleted when bot tokens
// of the same name are live: they go on, and nobody may register their
// name (else the hourly pass holds it).
func (s *Server) holdForBots(name string) {
	if live, err := s.bots.Live(name); err != nil || live > 0 && s.bots.HoldName(name) != nil {
		s.log.Warn("holding the name of a deleted account that bot tokens share", slog.String("user", name), slog.Any("err", err))
	}
}

// errNameHeld: an account holds its name (see lapsed).
var errNameHeld = errors.New("the name is held by its account")

// lapsed returns nil when u no longer holds its name: on a server that
// checks addresses, an account whose address was never confirmed and
// whose last link expired. Else anyone could keep a name from its owner
// for good by registering it with an address they cannot confirm (or
// somebody else's). Its registrant may still resend the link until
// someone registers the name.
func (s *Server) lapsed(u store.User) error {
	if s.mailer == nil || u.Bot || u.Email == "" || u.EmailVerified ||
		u.EmailExpires.IsZero() || !s.cfg.Now().After(u.EmailExpires) {
		return errNameHeld
	}
	return nil
}

// releaseLapsed deletes name's account if it lapsed, in one step with
// that check (so that a link resent meanwhile keeps it), and ends the
// sign-ins it had (from before the server checked addresses). When the
// name is held it answers 409 and returns false.
func (s *Server) releaseLapsed(w http.ResponseWriter, r *http.Request, name string) bool {
	logins, err := s.store.DeleteUserIf(name, s.lapsed)
	switch {
	case err == nil:
		for _, l := range logins {
			s.closer.CloseLogin(name, l, proto.CodeRevoked, reasonDeleted)
		}
		s.audit("account-lapsed", name, r, "")
		s.holdForBots(name)
		return true
	case errors.Is(err, store.ErrNotFound):
		return true
	case errors.Is(err, errNameHeld):
		writeError(w, http.StatusConflict, codeExists, "username is taken")
	case s.storeDown(w, err):
	default:
		s.internalError(w, "releasing a lapsed account", err)
	}
	return false
}

// deletionCode checks and spends the second factor of user, whose password
// passwordThenCode checked, when the account has one, and settles the
// attempt with the login limits. When it returns false it has answered.
func (s *Server) deletionCode(w http.ResponseWriter, addr, user, code string) bool {
	now := s.cfg.Now()
	u, err := s.store.GetUser(user)
	if err != nil {
		s.limiter.Cancel(addr, user, now)
		return s.userUpdated(w, err, "")
	}
	if u.TOTP == nil || !u.TOTP.Enabled {
		s.limiter.Success(addr, user, now)
		return true
	}
	if code == "" {
		s.limiter.Cancel(addr, user, now)
		writeError(w, http.StatusUnauthorized, codeTOTPRequired, "enter the code from your authenticator app")
		return false
	}
	err = s.store.UpdateUser(user, func(u *store.User) error {
		if u.TOTP == nil || !u.TOTP.Enabled || !s.spendSecondFactor(u, code) {
			return errTOTPRefused
		}
		return nil
	})
	s.settleCode(addr, user, err)
	return s.userUpdated(w, err, "")
}
