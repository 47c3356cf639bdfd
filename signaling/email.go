package signaling

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/mail"
	"net/smtp"
	"net/url"
	"strings"
	"time"

	"github.com/khadga/khadga/signaling/store"
)

// EmailLinkTTL is how long an emailed verification link works.
const EmailLinkTTL = 24 * time.Hour

// mailer sends the verification emails, to an SMTP server given as
// smtp://user:pass@host:port (STARTTLS is used whenever the server offers
// it). Its password is never logged: errors name the host only.
type mailer struct {
	addr, host string
	auth       smtp.Auth
	from       string
	timeout    time.Duration
}

func newMailer(rawURL, from string) (*mailer, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "smtp" || u.Hostname() == "" {
		return nil, errors.New("SMTP URL must look like smtp://user:pass@host:port")
	}
	if _, err := mail.ParseAddress(from); err != nil {
		return nil, fmt.Errorf("SMTP from address %q: %v", from, err)
	}
	port := u.Port()
	if port == "" {
		port = "587"
	}
	m := &mailer{addr: net.JoinHostPort(u.Hostname(), port), host: u.Hostname(), from: from, timeout: 15 * time.Second}
	if u.User != nil {
		pass, _ := u.User.Password()
		m.auth = smtp.PlainAuth("", u.User.Username(), pass, u.Hostname())
	}
	return m, nil
}

// send delivers one plain-text message, bounded by the mailer's timeout.
func (m *mailer) send(to, subject, body string) error {
	conn, err := net.DialTimeout("tcp", m.addr, m.timeout)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", m.addr, err)
	}
	conn.SetDeadline(time.Now().Add(m.timeout))
	c, err := smtp.NewClient(conn, m.host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp %s: %w", m.addr, err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: m.host, MinVersion: tls.VersionTLS12}); err != nil {
			return fmt.Errorf("smtp %s: starttls: %w", m.addr, err)
		}
	}
	if m.auth != nil {
		if err := c.Auth(m.auth); err != nil {
			return fmt.Errorf("smtp %s: authentication failed", m.addr)
		}
	}
	if err := c.Mail(m.from); err != nil {
		return fmt.Errorf("smtp %s: %w", m.addr, err)
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("smtp %s: recipient refused: %w", m.addr, err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp %s: %w", m.addr, err)
	}
	msg := "From: " + m.from + "\r\nTo: " + to + "\r\nSubject: " + subject +
		"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
		strings.ReplaceAll(body, "\n", "\r\n")
	if _, err := w.Write([]byte(msg)); err != nil {
		return fmt.Errorf("smtp %s: %w", m.addr, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp %s: %w", m.addr, err)
	}
	return c.Quit()
}

// validEmail checks an address: one plain addr-spec, at most 254 bytes.
func validEmail(s string) error {
	if len(s) > 254 {
		return errors.New("email address is too long")
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return errors.New("email address is not valid")
	}
	return nil
}

// startEmailCheck stores a fresh single-use verification token for u and
// mails the link to email, which becomes u's address in the same store
// update (errConflict if u's address is confirmed already and email is
// another). It runs inside registration, before the answer, and for a
// resend.
func (s *Server) startEmailCheck(user, email string) error {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	err := s.store.UpdateUser(user, func(u *store.User) error {
		if u.Email != email {
			if u.EmailVerified {
				return errConflict
			}
			u.Email = email
		}
		u.EmailToken, u.EmailExpires = emailTokenHash(tok, email), s.cfg.Now().Add(EmailLinkTTL)
		return nil
	})
	if err != nil {
		return err
	}
	link := strings.TrimSuffix(s.cfg.PublicURL, "/") + "/api/verify-email?" + url.Values{"user": {user}, "token": {tok}}.Encode()
	body := fmt.Sprintf("Hello %s,\n\nopen this link to confirm your email address for khadga:\n\n%s\n\n"+
		"The link works once, for %v. If you did not sign up, ignore this message.\n", user, link, EmailLinkTTL)
	return s.mailer.send(email, "Confirm your khadga account", body)
}

// emailTokenHash is what the store keeps of a link's token: bound to the
// address the link went to, so that a link confirms that address only,
// never one the account changed to after it was sent.
func emailTokenHash(tok, email string) []byte {
	sum := sha256.Sum256([]byte(tok + "\x00" + email))
	return sum[:]
}

// handleVerifyEmail follows an emailed link: the token must match, be
// unexpired and unused. It redirects to the app with the result.
func (s *Server) handleVerifyEmail(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	user, tok := q.Get("user"), q.Get("token")
	err := s.store.UpdateUser(user, func(u *store.User) error {
		if len(u.EmailToken) == 0 || subtle.ConstantTimeCompare(u.EmailToken, emailTokenHash(tok, u.Email)) != 1 || s.cfg.Now().After(u.EmailExpires) {
			return errConflict
		}
		u.EmailVerified, u.EmailToken, u.EmailExpires = true, nil, time.Time{}
		return nil
	})
	if s.storeDown(w, err) {
		return // the link still works: nothing was changed
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "link_invalid", "this link is invalid, used or expired")
		return
	}
	s.audit("email-verified", user, r, "")
	http.Redirect(w, r, "/?email-verified=1", http.StatusSeeOther)
}
