package signaling

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/store"
)

// Password reset by email, for someone who forgot their password, on a
// server that checks email addresses (--smtp-url). They ask with their
// username at /api/password-reset; if the account has a confirmed address,
// a link goes there. It opens the web app, which sets the new password at
// /api/password-reset/confirm. The store keeps a hash of each link's token
// bound to the password hash it would replace, so a link works for
// ResetLinkTTL and dies with any password change, its own reset included.
// A newer link leaves the older ones working: anybody may ask for a link
// to anybody's account, and that must not kill the one its owner is
// about to open. A reset ends the account's sign-ins, as `khadga user
// passwd` does; a second factor stays on and is asked at the next sign-in.
//
// The answer to a request is the same whether or not the account exists
// or has a confirmed address, and comes before any email is sent (its
// timing would tell otherwise). Asks are limited per client address (429);
// an account gets at most resetsPerWindow links per resetWindow, counted
// in its store record (so on every node of a cluster alike) and silently
// past that, so that nobody floods a mailbox; at most maxResetMails emails
// are on their way at once, and one asked for past that is dropped (and
// logged): the person asks again. Failed confirmations are limited per
// client address on their own.

// ResetLinkTTL is how long an emailed password-reset link works.
const ResetLinkTTL = time.Hour

// The links an account may get: resetsPerWindow per resetWindow.
const (
	resetsPerWindow = 3
	resetWindow     = 30 * time.Minute
)

// maxResetMails bounds the password-reset emails being sent at once.
const maxResetMails = 4

// Limits per client address: asks for a link (resetAskBurst, then one
// every resetAskEvery seconds), and failed confirmations.
const (
	resetAskBurst  = 20
	resetAskEvery  = 30
	resetFailBurst = 10
	resetFailEvery = 60
)

// errNoResetAddress: the account cannot get a reset link (no confirmed
// address, disabled, or a bot's name).
var errNoResetAddress = errors.New("no confirmed email address to send a reset link to")

// errResetBudget: the account had resetsPerWindow links lately.
var errResetBudget = errors.New("enough reset links were sent to this account lately")

const noEmailMsg = "this server sends no email: ask its administrator to set a new password (khadga user passwd)"

type resetRequest struct {
	Username string `json:"username"`
}

type resetConfirmRequest struct {
	Username    string `json:"username"`
	Token       string `json:"token"`
	NewPassword string `json:"new_password"`
}

// handleResetRequest mails a reset link when the account has a confirmed
// address; its answer (202) does not say whether it did.
func (s *Server) handleResetRequest(w http.ResponseWriter, r *http.Request) {
	if s.mailer == nil {
		writeError(w, http.StatusNotFound, codeNotFound, noEmailMsg)
		return
	}
	var req resetRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if err := proto.ValidUsername(req.Username); err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
		return
	}
	if ok, retry := s.resetAsks.Allow(auth.AddrKey(s.clientAddr(r)), s.cfg.Now()); !ok {
		tooMany(w, retry, "too many password resets asked for from your address; try again later")
		return
	}
	s.startResetMail(req.Username, s.clientAddr(r))
	writeJSON(w, http.StatusAccepted, map[string]string{
		"password_reset": "if this account has a confirmed email address, a link is on its way"})
}

// startResetMail sends user's reset link, if the account has a confirmed
// address, on a goroutine of its own, unless maxResetMails are on their
// way already. What goes wrong is said to the operator alone.
func (s *Server) startResetMail(user, addr string) {
	s.mailsMu.Lock()
	defer s.mailsMu.Unlock()
	select {
	case <-s.done:
		return // closing: the store is about to close
	default:
	}
	select {
	case s.resetMails <- struct{}{}:
	default:
		s.log.Warn("a password-reset email was dropped: too many on their way at once", slog.String("user", user))
		return
	}
	s.mailsWG.Add(1)
	go func() {
		defer func() { <-s.resetMails; s.mailsWG.Done() }()
		switch err := s.sendResetLink(user); {
		case err == nil:
			s.auditFrom("password-reset-sent", user, addr, "")
		case errors.Is(err, errNoResetAddress), errors.Is(err, errResetBudget), errors.Is(err, store.ErrNotFound):
		default:
			s.log.Error("sending a password-reset email", slog.String("user", user), slog.Any("err", err))
		}
	}()
}

// sendResetLink stores a fresh reset token for user, within the account's
// budget, and mails the link to the account's confirmed address.
func (s *Server) sendResetLink(user string) error {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	var email string
	err := s.store.UpdateUser(user, func(u *store.User) error {
		if u.Bot || u.Disabled || !u.EmailVerified || u.Email == "" {
			return errNoResetAddress
		}
		now := s.cfg.Now()
		u.Resets = liveResets(u.Resets, now)
		recent := 0
		for _, l := range u.Resets {
			if now.Sub(l.Sent) < resetWindow {
				recent++
			}
		}
		if recent >= resetsPerWindow {
			return errResetBudget
		}
		u.Resets = append(u.Resets, store.ResetLink{Token: resetTokenHash(tok, u.PasswordHash), Sent: now.UTC()})
		email = u.Email
		return nil
	})
	if err != nil {
		return err
	}
	// The token travels in the fragment, which browsers send to no server
	// (no access log, no Referer keeps it).
	link := strings.TrimSuffix(s.cfg.PublicURL, "/") + "/#" + url.Values{"reset": {user}, "token": {tok}}.Encode()
	body := fmt.Sprintf("Hello %s,\n\nopen this link to choose a new password for khadga:\n\n%s\n\n"+
		"The link works once, for %v. If you did not ask for it, ignore this message: your password stays as it is.\n",
		user, link, ResetLinkTTL)
	return s.mailer.send(email, "Reset your khadga password", body)
}

// resetTokenHash is what the store keeps of a reset link's token: bound to
// the password hash the reset replaces.
func resetTokenHash(tok, passwordHash string) []byte {
	sum := sha256.Sum256([]byte(tok + "\x00" + passwordHash))
	return sum[:]
}

// liveResets drops the links that expired by now. The budget keeps the
// rest few: resetsPerWindow per resetWindow over ResetLinkTTL.
func liveResets(ls []store.ResetLink, now time.Time) []store.ResetLink {
	var out []store.ResetLink
	for _, l := range ls {
		if now.Before(l.Sent.Add(ResetLinkTTL)) {
			out = append(out, l)
		}
	}
	return out
}

// resetTokenOK reports whether tok is one of u's live reset tokens.
func resetTokenOK(u *store.User, tok string, now time.Time) bool {
	if u.Bot || u.Disabled {
		return false
	}
	want, ok := resetTokenHash(tok, u.PasswordHash), 0
	for _, l := range liveResets(u.Resets, now) {
		ok |= subtle.ConstantTimeCompare(l.Token, want)
	}
	return ok == 1
}

// handleResetConfirm sets a new password with a reset link's token and
// ends the account's sign-ins. The token is checked before the password
// is hashed, so a wrong one costs the server a store read, and failures
// count against the client address.
func (s *Server) handleResetConfirm(w http.ResponseWriter, r *http.Request) {
	if s.mailer == nil {
		writeError(w, http.StatusNotFound, codeNotFound, noEmailMsg)
		return
	}
	var req resetConfirmRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if err := proto.ValidPassword(req.NewPassword); err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, "new password: "+err.Error())
		return
	}
	u, err := s.store.GetUser(req.Username)
	if s.storeDown(w, err) {
		return
	}
	if err != nil || !resetTokenOK(&u, req.Token, s.cfg.Now()) {
		s.resetRefused(w, r)
		return
	}
	hash, ok := s.hashPassword(w, r, req.NewPassword)
	if !ok {
		return
	}
	// The sign-ins end before the password changes, so that a store that
	// fails here has changed nothing the link cannot redo; and again after,
	// for any that came in between.
	before, err := s.store.RevokeUserFamilyIDs(u.Name)
	if err != nil {
		s.internalError(w, "ending the sign-ins of an account being reset", err)
		return
	}
	err = s.store.UpdateUser(u.Name, func(u *store.User) error {
		if !resetTokenOK(u, req.Token, s.cfg.Now()) {
			return errConflict // used, or the password changed, meanwhile
		}
		u.PasswordHash, u.Resets = hash, nil // the others died with the old hash
		return nil
	})
	switch {
	case errors.Is(err, errConflict), errors.Is(err, store.ErrNotFound):
		s.resetRefused(w, r)
		return
	case err != nil:
		s.internalError(w, "resetting a password", err)
		return
	}
	s.audit("password-reset", u.Name, r, "")
	after, err := s.revokeSignIns(u.Name)
	for _, l := range append(before, after...) {
		s.endSessions(u.Name, l, reasonPassword)
	}
	if err != nil {
		s.signInsOutlived(w, u.Name, err, outlivedPassword)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"username": u.Name})
}

// resetRefused answers a reset with a token that is not (or no longer)
// the account's, counting it against the client address.
func (s *Server) resetRefused(w http.ResponseWriter, r *http.Request) {
	if ok, retry := s.resetFails.Allow(auth.AddrKey(s.clientAddr(r)), s.cfg.Now()); !ok {
		tooMany(w, retry, "too many failed password resets from your address; try again later")
		return
	}
	writeError(w, http.StatusBadRequest, "link_invalid", "this link is invalid, used or expired; ask for a new one")
}
