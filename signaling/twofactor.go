package signaling

import (
	"encoding/base64"
	"errors"
	"net/http"

	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/store"
)

// Second-factor answers, stable codes the browser app switches on.
const (
	codeTOTPRequired = "totp_required" // the password was right; send it again with "code"
	codeTOTPInvalid  = "totp_invalid"
	codeConflict     = "conflict"
)

var (
	// errTOTPRefused aborts a store update whose code did not check.
	errTOTPRefused = errors.New("totp code refused")
	// errConflict aborts a store update that the account's state does not allow.
	errConflict = errors.New("conflict")
)

// handleTOTPEnroll starts an enrollment: a new secret, pending until
// confirmed, with its otpauth URL and QR code.
func (s *Server) handleTOTPEnroll(w http.ResponseWriter, r *http.Request) {
	claims, ok := s.requireBearer(w, r)
	if !ok {
		return
	}
	if ok, retry := s.enrolls.Allow(claims.User, s.cfg.Now()); !ok {
		tooMany(w, retry, "too many two-factor enrolments; try again later")
		return
	}
	e, err := auth.NewTOTP("khadga", claims.User)
	if err != nil {
		s.internalError(w, "generating a TOTP secret", err)
		return
	}
	err = s.store.UpdateUser(claims.User, func(u *store.User) error {
		if u.TOTP != nil && u.TOTP.Enabled {
			return errConflict
		}
		u.TOTP = &store.TOTP{Secret: e.Secret}
		return nil
	})
	if !s.userUpdated(w, err, "two-factor authentication is already on; disable it first") {
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"secret": e.Secret, "otpauth_url": e.URL,
		"qr_png": "data:image/png;base64," + base64.StdEncoding.EncodeToString(e.QRPNG),
	})
}

type passwordCodeRequest struct {
	Password string `json:"password"`
	Code     string `json:"code"`
}

// handleTOTPConfirm turns a pending enrollment on with the password and
// its first code, and returns the one-time recovery codes (shown once;
// only hashes are kept). It takes the password so that a stolen access
// token is not enough to bind the account to someone else's authenticator
// (its owner could then neither sign in nor turn 2FA off).
func (s *Server) handleTOTPConfirm(w http.ResponseWriter, r *http.Request) {
	claims, req, addr, ok := s.passwordThenCode(w, r, "totp-confirm-failed")
	if !ok {
		return
	}
	codes, hashes, err := auth.NewRecoveryCodes(auth.RecoveryCodes)
	if err != nil {
		s.limiter.Cancel(addr, claims.User, s.cfg.Now())
		s.internalError(w, "generating recovery codes", err)
		return
	}
	err = s.store.UpdateUser(claims.User, func(u *store.User) error {
		if u.TOTP == nil || u.TOTP.Enabled {
			return errConflict
		}
		step, ok := auth.CheckTOTP(u.TOTP.Secret, req.Code, u.TOTP.LastStep, s.cfg.Now())
		if !ok {
			return errTOTPRefused
		}
		u.TOTP.Enabled, u.TOTP.LastStep, u.TOTP.Recovery = true, step, hashes
		return nil
	})
	s.settleCode(addr, claims.User, err)
	if !s.userUpdated(w, err, "no pending enrollment: enroll first") {
		return
	}
	s.audit("totp-enabled", claims.User, r, "")
	writeJSON(w, http.StatusOK, map[string]any{"recovery_codes": codes})
}

// handleTOTPDisable turns the second factor off; it takes the password and
// a current code (or a recovery code), so a stolen access token is not enough.
func (s *Server) handleTOTPDisable(w http.ResponseWriter, r *http.Request) {
	claims, req, addr, ok := s.passwordThenCode(w, r, "totp-disable-failed")
	if !ok {
		return
	}
	err := s.store.UpdateUser(claims.User, func(u *store.User) error {
		if u.TOTP == nil || !u.TOTP.Enabled {
			return errConflict
		}
		if !s.spendSecondFactor(u, req.Code) {
			return errTOTPRefused
		}
		u.TOTP = nil
		return nil
	})
	s.settleCode(addr, claims.User, err)
	if !s.userUpdated(w, err, "two-factor authentication is not on") {
		return
	}
	s.audit("totp-disabled", claims.User, r, "")
	w.WriteHeader(http.StatusNoContent)
}

// passwordThenCode reads a {"password","code"} request of the signed-in
// user and checks the password under the login limits (without them these
// endpoints were a password oracle: issue 14, point 2). When it returns
// true the attempt is open: the caller checks the code and settles it
// (settleCode). When it returns false it has answered.
func (s *Server) passwordThenCode(w http.ResponseWriter, r *http.Request, auditKind string) (auth.Claims, passwordCodeRequest, string, bool) {
	var req passwordCodeRequest
	claims, ok := s.requireBearer(w, r)
	if !ok || !decodeBody(w, r, &req) {
		return claims, req, "", false
	}
	addr := s.clientAddr(r)
	_, ok = s.passwordChecked(w, r, addr, claims.User, credentials{Username: claims.User, Password: req.Password}, errBadCredentials, auditKind)
	return claims, req, addr, ok
}

// spendSecondFactor checks code against u's TOTP (a time code newer than the
// last one used, or an unused recovery code) and records its use in u. The
// caller runs it inside a store update so that the use is atomic.
func (s *Server) spendSecondFactor(u *store.User, code string) bool {
	t := u.TOTP
	if step, ok := auth.CheckTOTP(t.Secret, code, t.LastStep, s.cfg.Now()); ok {
		t.LastStep = step
		return true
	}
	if i := auth.MatchRecovery(t.Recovery, code); i >= 0 {
		t.Recovery = append(t.Recovery[:i], t.Recovery[i+1:]...)
		return true
	}
	return false
}

// settleCode reports to the login limiter how a store update that checked
// a second factor ended: a refused code is a failure, a passed one a
// success, anything else (no enrollment, a store error) neither.
func (s *Server) settleCode(addr, user string, err error) {
	now := s.cfg.Now()
	switch {
	case err == nil:
		s.limiter.Success(addr, user, now)
	case errors.Is(err, errTOTPRefused):
		s.limiter.Failure(addr, user, now)
	default:
		s.limiter.Cancel(addr, user, now)
	}
}

// userUpdated answers a failed TOTP store update; it reports whether err was nil.
func (s *Server) userUpdated(w http.ResponseWriter, err error, conflict string) bool {
	switch {
	case err == nil:
		return true
	case errors.Is(err, errConflict):
		writeError(w, http.StatusConflict, codeConflict, conflict)
	case errors.Is(err, errTOTPRefused):
		writeError(w, http.StatusUnauthorized, codeTOTPInvalid, "wrong or already used code")
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusUnauthorized, codeUnauthorized, "account no longer exists")
	default:
		s.internalError(w, "updating a user", err)
	}
	return false
}

// requireBearer answers 401 unless the request carries a valid access token.
func (s *Server) requireBearer(w http.ResponseWriter, r *http.Request) (auth.Claims, bool) {
	c, err := s.bearer(r)
	if s.storeDown(w, err) {
		return auth.Claims{}, false
	}
	if err != nil {
		writeError(w, http.StatusUnauthorized, codeUnauthorized, err.Error())
		return auth.Claims{}, false
	}
	return c, true
}
